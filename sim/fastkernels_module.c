/* CPython binding of the fast matmul kernels (fastkernels.c), imported by sim/matmul.py.
 *
 * Why a module rather than ctypes: policy b's cached matmul at batch 100 leaves little time for
 * work beside the GEMM, and ctypes' per-call conversion of array pointers and arguments would
 * take much of it (docs/performance.md). Here each array arrives through the buffer protocol
 * (C-contiguous, writable where the kernel writes), its size is checked against the shape, and
 * the GIL is released while the kernel runs. Errors are Python exceptions that name the
 * argument.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include "fastkernels.h"

typedef struct {
    Py_buffer view;
    int held;
} Buf;

/* Take obj's buffer (None allowed when `optional`), C-contiguous, writable if `writable`, of
 * `itemsize`-byte elements, at least `need` bytes. Returns 0, or -1 with an exception set. */
static int take(PyObject *obj, Buf *b, const char *name, Py_ssize_t itemsize, Py_ssize_t need,
                int writable, int optional)
{
    b->held = 0;
    if (obj == Py_None && optional)
        return 0;
    if (PyObject_GetBuffer(obj, &b->view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0) {
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous%s array", name,
                     writable ? " writable" : "");
        return -1;
    }
    b->held = 1;
    if (b->view.itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected %zd-byte elements, got %zd-byte ones", name,
                     itemsize, b->view.itemsize);
        return -1;
    }
    if (b->view.len < need) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, need %zd", name, b->view.len, need);
        return -1;
    }
    return 0;
}

/* Outputs must not overlap inputs: the kernels read and write through restrict pointers. */
static int disjoint(const Buf *out, const char *out_name, const Buf *in, const char *in_name)
{
    if (out->held && in->held) {
        const char *o = out->view.buf, *i = in->view.buf;
        if (o < i + in->view.len && i < o + out->view.len) {
            PyErr_Format(PyExc_ValueError, "%s overlaps %s", out_name, in_name);
            return -1;
        }
    }
    return 0;
}

static void release(Buf *bufs, int n)
{
    for (int i = 0; i < n; i++)
        if (bufs[i].held)
            PyBuffer_Release(&bufs[i].view);
}

static int check_shape(long long rows, long long cols, int t)
{
    if (rows < 0 || cols < 0 || (cols > 0 && rows > PY_SSIZE_T_MAX / 8 / cols)) {
        PyErr_Format(PyExc_ValueError, "bad shape %lld x %lld", rows, cols);
        return -1;
    }
    if (t < 0 || t > 22) {
        PyErr_Format(PyExc_ValueError, "tuning bits %d outside 0..22", t);
        return -1;
    }
    return 0;
}

#define DATA(b, type) ((type *)(b).view.buf)

/* transform_checked and sgd_transform: o[0] = w, o[1..6] = mq, wn, nq, nn, row_flags, stats,
 * o[7..9] = the optional qual_cols, nz_rows, nz_cols; upd (sgd_transform only) = v, g, which
 * update w (then writable) before the transform. */
static PyObject *run_transform(PyObject **o, long long rows, long long cols, int t, int dual,
                               PyObject **upd, double momentum, double lr)
{
    if (check_shape(rows, cols, t) < 0)
        return NULL;
    for (int i = 7; i < 10; i += 2)
        if (o[i] != Py_None && (dual || rows > (long long)UINT32_MAX)) {
            const char *name = i == 7 ? "qual_cols" : "nz_cols";
            PyErr_Format(PyExc_ValueError, dual ? "%s: policy b only"
                                                : "%s: more rows than a uint32 count holds", name);
            return NULL;
        }
    const Py_ssize_t cells = (Py_ssize_t)(rows * cols);
    Buf b[12];
    int n = 0, ok = 1;
    ok = ok && take(o[0], &b[n++], "w", 4, cells * 4, upd != NULL, 0) == 0;
    ok = ok && take(o[1], &b[n++], "mq", 4, cells * 4, 1, 0) == 0;
    ok = ok && take(o[2], &b[n++], "wn", 4, cells * 4, 1, !dual) == 0;
    ok = ok && take(o[3], &b[n++], "nq", 8, rows * 8, 1, 0) == 0;
    ok = ok && take(o[4], &b[n++], "nn", 8, rows * 8, 1, 0) == 0;
    ok = ok && take(o[5], &b[n++], "row_flags", 4, rows * 4, 1, 0) == 0;
    ok = ok && take(o[6], &b[n++], "stats", 4, 5 * 4, 1, 0) == 0;
    ok = ok && take(o[7], &b[n++], "qual_cols", 4, cols * 4, 1, 1) == 0;
    ok = ok && take(o[8], &b[n++], "nz_rows", 8, rows * 8, 1, 1) == 0;
    ok = ok && take(o[9], &b[n++], "nz_cols", 4, cols * 4, 1, 1) == 0;
    if (upd) {
        ok = ok && take(upd[0], &b[n++], "v", 4, cells * 4, 1, 0) == 0;
        ok = ok && take(upd[1], &b[n++], "g", 4, cells * 4, 0, 0) == 0;
    }
    ok = ok && disjoint(&b[1], "mq", &b[0], "w") == 0 && disjoint(&b[2], "wn", &b[0], "w") == 0
            && disjoint(&b[2], "wn", &b[1], "mq") == 0;
    for (int i = 7; ok && i < 10; i++)     /* the optional counts overlap neither w nor mq */
        ok = disjoint(&b[i], "a count", &b[0], "w") == 0 && disjoint(&b[i], "a count", &b[1], "mq") == 0;
    for (int i = 0; ok && upd && i < 10; i++)   /* v is written: it overlaps no other array */
        ok = disjoint(&b[10], "v", &b[i], i == 0 ? "w" : "an output") == 0;
    ok = ok && (!upd || (disjoint(&b[10], "v", &b[11], "g") == 0 && disjoint(&b[0], "w", &b[11], "g") == 0));
    if (ok) {
        uint32_t *colq = b[7].held ? DATA(b[7], uint32_t) : NULL, *nzc = b[9].held ? DATA(b[9], uint32_t) : NULL;
        int64_t *nz = b[8].held ? DATA(b[8], int64_t) : NULL;
        uint32_t *wn = dual ? DATA(b[2], uint32_t) : NULL;
        Py_BEGIN_ALLOW_THREADS
        if (upd)
            canna_sgd_transform(DATA(b[0], float), DATA(b[10], float), DATA(b[11], float), momentum,
                                lr, rows, cols, t, dual, DATA(b[1], uint32_t), wn, DATA(b[3], int64_t),
                                DATA(b[4], int64_t), DATA(b[5], uint32_t), DATA(b[6], int32_t),
                                colq, nz, nzc);
        else
            canna_transform_checked(DATA(b[0], uint32_t), rows, cols, t, dual, DATA(b[1], uint32_t),
                                    wn, DATA(b[3], int64_t), DATA(b[4], int64_t),
                                    DATA(b[5], uint32_t), DATA(b[6], int32_t), colq, nz, nzc);
        Py_END_ALLOW_THREADS
    }
    release(b, n);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *transform_checked(PyObject *self, PyObject *args)
{
    long long rows, cols;
    int t, dual;
    PyObject *o[10];
    o[7] = o[8] = o[9] = Py_None;
    if (!PyArg_ParseTuple(args, "OLLipOOOOOO|OOO:transform_checked", &o[0], &rows, &cols, &t, &dual,
                          &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8], &o[9]))
        return NULL;
    return run_transform(o, rows, cols, t, dual, NULL, 0.0, 0.0);
}

static PyObject *sgd_transform(PyObject *self, PyObject *args)
{
    long long rows, cols;
    int t, dual;
    double momentum, lr;
    PyObject *o[10], *upd[2];
    if (!PyArg_ParseTuple(args, "OOOddLLipOOOOOOOOO:sgd_transform", &o[0], &upd[0], &upd[1],
                          &momentum, &lr, &rows, &cols, &t, &dual, &o[1], &o[2], &o[3], &o[4],
                          &o[5], &o[6], &o[7], &o[8], &o[9]))
        return NULL;
    return run_transform(o, rows, cols, t, dual, upd, momentum, lr);
}

static PyObject *scan_first(PyObject *self, PyObject *args)
{
    long long rows, cols;
    int t, dual;
    PyObject *o[7];
    if (!PyArg_ParseTuple(args, "OLLipOOOOOO:scan_first", &o[0], &rows, &cols, &t, &dual,
                          &o[1], &o[2], &o[3], &o[4], &o[5], &o[6]) || check_shape(rows, cols, t) < 0)
        return NULL;
    const Py_ssize_t cells = (Py_ssize_t)(rows * cols);
    Buf b[7];
    int n = 0, ok = 1;
    ok = ok && take(o[0], &b[n++], "a", 4, cells * 4, 0, 0) == 0;
    ok = ok && take(o[1], &b[n++], "row_flags", 4, cols * 4, 0, 0) == 0;
    ok = ok && take(o[2], &b[n++], "stats", 4, 5 * 4, 0, 0) == 0;
    ok = ok && take(o[3], &b[n++], "ma", 4, cells * 4, 1, !dual) == 0;
    ok = ok && take(o[4], &b[n++], "cnt_normal", 4, cols * 4, 1, 0) == 0;
    ok = ok && take(o[5], &b[n++], "cnt_q", 4, cols * 4, 1, 0) == 0;
    ok = ok && take(o[6], &b[n++], "risky", 8, 0, 1, 0) == 0;
    ok = ok && disjoint(&b[3], "ma", &b[0], "a") == 0;
    int64_t count = 0;
    if (ok) {
        const int64_t cap = b[6].view.len / 8;
        Py_BEGIN_ALLOW_THREADS
        count = canna_scan_first(DATA(b[0], uint32_t), rows, cols, t, dual, DATA(b[1], uint32_t),
                                 DATA(b[2], int32_t), dual ? DATA(b[3], uint32_t) : NULL,
                                 DATA(b[4], uint32_t), DATA(b[5], uint32_t), DATA(b[6], int64_t), cap);
        Py_END_ALLOW_THREADS
    }
    release(b, n);
    return ok ? PyLong_FromLongLong(count) : NULL;
}

/* The lean path's one call, so it takes the shape from `a` itself and declines (-1) rather than
 * raises when `a` is not a C-contiguous 2-D float32 matrix with len(nq32) columns: the caller's
 * general path then checks and reports. `transposed`: `a` is the first operand's transpose
 * (len(nq32) rows; scan_first_quick_t). */
static PyObject *quick(PyObject *args, const char *format, int transposed)
{
    long long n_checked;
    int q_lo, q_hi, b_e_max;
    PyObject *a, *nq32, *nz32 = Py_None;
    if (!PyArg_ParseTuple(args, format, &a, &nq32, &n_checked, &q_lo, &q_hi, &b_e_max, &nz32))
        return NULL;
    Buf b[3];
    b[2].held = 0;
    if (take(nq32, &b[0], "nq32", 4, 0, 0, 0) < 0) {
        release(b, 1);
        return NULL;
    }
    const Py_ssize_t k_dim = b[0].view.len / 4;
    if (take(nz32, &b[2], "nz32", 4, k_dim * 4, 0, 1) < 0) {
        release(b, 1);
        release(b + 2, 1);
        return NULL;
    }
    int64_t hits = -1, nonzero = 0;
    b[1].held = PyObject_GetBuffer(a, &b[1].view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0;
    if (!b[1].held)
        PyErr_Clear();
    else if (b[1].view.ndim == 2 && b[1].view.itemsize == 4 && b[1].view.format != NULL
             && strcmp(b[1].view.format, "f") == 0 && b[1].view.shape[transposed ? 0 : 1] == k_dim) {
        const Py_ssize_t other = b[1].view.shape[transposed ? 1 : 0];
        const uint32_t *nz = b[2].held ? DATA(b[2], uint32_t) : NULL;
        Py_BEGIN_ALLOW_THREADS
        if (transposed)
            hits = canna_scan_first_quick_t(DATA(b[1], uint32_t), k_dim, other, DATA(b[0], uint32_t),
                                            q_lo, q_hi, b_e_max, nz, &nonzero);
        else
            hits = canna_scan_first_quick(DATA(b[1], uint32_t), other, k_dim, DATA(b[0], uint32_t),
                                          n_checked, q_lo, q_hi, b_e_max, nz, &nonzero);
        Py_END_ALLOW_THREADS
    }
    const int with_nonzero = b[2].held;
    release(b, 3);
    if (with_nonzero)   /* (hits, products of two nonzero finite operands); hits -1: declined */
        return Py_BuildValue("(LL)", (long long)hits, (long long)nonzero);
    return PyLong_FromLongLong(hits);
}

static PyObject *scan_first_quick(PyObject *self, PyObject *args)
{
    return quick(args, "OOLiii|O:scan_first_quick", 0);
}

static PyObject *scan_first_quick_t(PyObject *self, PyObject *args)
{
    return quick(args, "OOLiii|O:scan_first_quick_t", 1);
}

/* The one argument x of a reduction over binary32 patterns (format names it): its buffer in b
 * (held), or -1 with an exception set and nothing held. */
static int take_patterns(PyObject *args, const char *format, Buf *b)
{
    PyObject *x;
    if (!PyArg_ParseTuple(args, format, &x))
        return -1;
    if (take(x, b, "x", 4, 0, 0, 0) < 0) {
        release(b, 1);
        return -1;
    }
    return 0;
}

static PyObject *max_finite_exponent(PyObject *self, PyObject *args)
{
    Buf b[1];
    if (take_patterns(args, "O:max_finite_exponent", b) < 0)
        return NULL;
    uint32_t e;
    Py_BEGIN_ALLOW_THREADS
    e = canna_max_finite_exponent(DATA(b[0], uint32_t), b[0].view.len / 4);
    Py_END_ALLOW_THREADS
    release(b, 1);
    return PyLong_FromUnsignedLong(e);
}

static PyObject *count_nonzero_finite(PyObject *self, PyObject *args)
{
    long long rows, cols;
    PyObject *o[3];
    if (!PyArg_ParseTuple(args, "OLLOO:count_nonzero_finite", &o[0], &rows, &cols, &o[1], &o[2])
        || check_shape(rows, cols, 0) < 0)
        return NULL;
    if (rows > (long long)UINT32_MAX || cols > (long long)UINT32_MAX) {
        PyErr_Format(PyExc_ValueError, "shape %lld x %lld: counts would not fit uint32", rows, cols);
        return NULL;
    }
    Buf b[3];
    int n = 0, ok = 1;
    ok = ok && take(o[0], &b[n++], "x", 4, (Py_ssize_t)(rows * cols) * 4, 0, 0) == 0;
    ok = ok && take(o[1], &b[n++], "row_counts", 8, rows * 8, 1, 1) == 0;
    ok = ok && take(o[2], &b[n++], "col_counts", 4, cols * 4, 1, 1) == 0;
    ok = ok && disjoint(&b[1], "row_counts", &b[0], "x") == 0 && disjoint(&b[2], "col_counts", &b[0], "x") == 0;
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        canna_count_nonzero_finite(DATA(b[0], uint32_t), rows, cols,
                                   b[1].held ? DATA(b[1], int64_t) : NULL,
                                   b[2].held ? DATA(b[2], uint32_t) : NULL);
        Py_END_ALLOW_THREADS
    }
    release(b, n);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

/* transform_lean(w, t, mq) -> (pow2_lo, pow2_hi, e_max, mag_min1, mag_max), or None where the
 * lean branch cannot serve w: canna_transform_lean of w (float32, C-contiguous, any shape) into
 * mq (as many elements). One call and a tuple: in a training step the Python around a kernel
 * call costs more than a small kernel. */
static PyObject *transform_lean(PyObject *self, PyObject *args)
{
    PyObject *o[2];
    int t;
    if (!PyArg_ParseTuple(args, "OiO:transform_lean", &o[0], &t, &o[1]) || check_shape(0, 0, t) < 0)
        return NULL;
    Buf b[2];
    int n = 0, ok = 1;
    ok = ok && take(o[0], &b[n++], "w", 4, 0, 0, 0) == 0;
    ok = ok && take(o[1], &b[n++], "mq", 4, ok ? b[0].view.len : 0, 1, 0) == 0;
    ok = ok && disjoint(&b[1], "mq", &b[0], "w") == 0;
    int64_t out[5];
    int served = 0;
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        served = canna_transform_lean(DATA(b[0], uint32_t), b[0].view.len / 4, t, DATA(b[1], uint32_t), out, 1);
        Py_END_ALLOW_THREADS
    }
    release(b, n);
    if (!ok)
        return NULL;
    if (!served)
        Py_RETURN_NONE;
    return Py_BuildValue("(LLLLL)", (long long)out[0], (long long)out[1], (long long)out[2],
                         (long long)out[3], (long long)out[4]);
}

static PyObject *magnitude_range(PyObject *self, PyObject *args)
{
    Buf b[1];
    if (take_patterns(args, "O:magnitude_range", b) < 0)
        return NULL;
    uint32_t lo, hi;
    Py_BEGIN_ALLOW_THREADS
    canna_magnitude_range(DATA(b[0], uint32_t), b[0].view.len / 4, &lo, &hi);
    Py_END_ALLOW_THREADS
    release(b, 1);
    return Py_BuildValue("(kk)", (unsigned long)lo, (unsigned long)hi);
}

static PyObject *lean_verdict(PyObject *self, PyObject *args)
{
    unsigned long mag_min1, mag_max;
    long long k;
    int q_lo, q_hi, b_e_max;
    if (!PyArg_ParseTuple(args, "kkLiii:lean_verdict", &mag_min1, &mag_max, &k, &q_lo, &q_hi, &b_e_max))
        return NULL;
    if (k < 0 || mag_min1 > UINT32_MAX || mag_max > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "lean_verdict: k < 0 or a magnitude beyond 32 bits");
        return NULL;
    }
    return PyBool_FromLong(canna_lean_verdict((uint32_t)mag_min1, (uint32_t)mag_max, k, q_lo, q_hi, b_e_max));
}

/* A float32 operand for the lean entries: C-contiguous, format "f" and, where `matrix`, 2-D.
 * Returns 1 with the buffer held, or 0 (nothing held, no exception): the caller's general path
 * serves it. */
static int take_operand(PyObject *obj, Buf *b, int matrix)
{
    b->held = PyObject_GetBuffer(obj, &b->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0;
    if (!b->held) {
        PyErr_Clear();
        return 0;
    }
    if ((matrix && b->view.ndim != 2) || b->view.itemsize != 4 || b->view.format == NULL
        || strcmp(b->view.format, "f") != 0) {
        release(b, 1);
        b->held = 0;
        return 0;
    }
    return 1;
}

/* lean_forward(x, w, k, t_w, t_x, mw, mx) -> (w's pow2_lo, pow2_hi, e_max, x's pow2_lo,
 * pow2_hi, e_max), or None: the lean forward of canna.torch's layers, the matmul x @ M(w) of
 * inner size k with w checked (a linear layer's x @ w.T; a convolution's im2col matmul), in one
 * call (inside a training step the Python around each kernel call cost more than the kernels:
 * docs/performance.md). Transforms w (t_w) into mw and, where mx is not None, x (t_x, for the
 * weight gradient, while x is in cache) into mx; the forward verdict from x's magnitude range.
 * k = -1: x and w are matrices with one inner size, k. None where x or w is not a C-contiguous
 * float32 operand (for k = -1, such matrices), where a transform declines or where the verdict
 * does: the caller's general path then serves (and reports) it. x's ranges are (1000, -1000, 0)
 * without mx. */
static PyObject *lean_forward(PyObject *self, PyObject *args)
{
    PyObject *xo, *wo, *mwo, *mxo;
    long long k;
    int t_w, t_x;
    if (!PyArg_ParseTuple(args, "OOLiiOO:lean_forward", &xo, &wo, &k, &t_w, &t_x, &mwo, &mxo)
        || check_shape(0, 0, t_w) < 0 || check_shape(0, 0, t_x) < 0)
        return NULL;
    Buf b[4];
    const int matrices = k == -1;
    if (!take_operand(xo, &b[0], matrices))
        Py_RETURN_NONE;
    if (!take_operand(wo, &b[1], matrices) || (matrices && b[1].view.shape[1] != b[0].view.shape[1])) {
        release(b, 2);
        Py_RETURN_NONE;
    }
    if (matrices)
        k = b[0].view.shape[1];
    int n = 2, ok = 1;
    if (k < 0) {
        PyErr_SetString(PyExc_ValueError, "lean_forward: k < -1");
        ok = 0;
    }
    ok = ok && take(mwo, &b[n++], "mw", 4, b[1].view.len, 1, 0) == 0;
    ok = ok && take(mxo, &b[n++], "mx", 4, b[0].view.len, 1, 1) == 0;
    for (int i = 0; ok && i < 2; i++)
        ok = disjoint(&b[2], "mw", &b[i], "an input") == 0 && disjoint(&b[3], "mx", &b[i], "an input") == 0;
    ok = ok && disjoint(&b[3], "mx", &b[2], "mw") == 0;
    int64_t r[6];
    int served = 0;
    if (ok) {
        Py_BEGIN_ALLOW_THREADS
        served = canna_lean_forward(DATA(b[0], uint32_t), b[0].view.len / 4, DATA(b[1], uint32_t),
                                    b[1].view.len / 4, k, t_w, t_x, DATA(b[2], uint32_t),
                                    b[3].held ? DATA(b[3], uint32_t) : NULL, r);
        Py_END_ALLOW_THREADS
    }
    release(b, n);
    if (!ok)
        return NULL;
    if (!served)
        Py_RETURN_NONE;
    return Py_BuildValue("(LLLLLL)", (long long)r[0], (long long)r[1], (long long)r[2],
                         (long long)r[3], (long long)r[4], (long long)r[5]);
}

/* lean_backward(g, ranges, k_w, k_x, want_w, want_x) -> (gradient served, backward error
 * served): the verdicts of the lean backward phases, the weight gradient against M(x) (inner
 * size k_w) and the backward error against M(w) (inner size k_x), from one pass over the error
 * g (its magnitude range); ranges: lean_forward's. k_w = k_x = -1: g is a matrix, the linear
 * layer's g.T @ M(x) and g @ M(w) (inner sizes: its rows, its columns). (False, False) where g
 * is not a C-contiguous float32 operand (matrix). */
static PyObject *lean_backward(PyObject *self, PyObject *args)
{
    PyObject *go;
    long long r[6], k_w, k_x;
    int want_w, want_x;
    if (!PyArg_ParseTuple(args, "O(LLLLLL)LLpp:lean_backward", &go, &r[0], &r[1], &r[2], &r[3],
                          &r[4], &r[5], &k_w, &k_x, &want_w, &want_x))
        return NULL;
    const int matrix = k_w == -1 && k_x == -1;
    if (!matrix && (k_w < 0 || k_x < 0)) {
        PyErr_SetString(PyExc_ValueError, "lean_backward: k_w and k_x both -1 or both >= 0");
        return NULL;
    }
    Buf b[1];
    int ok_w = 0, ok_x = 0;
    if (take_operand(go, &b[0], matrix)) {
        if (matrix) {
            k_w = b[0].view.shape[0];
            k_x = b[0].view.shape[1];
        }
        const int64_t ranges[6] = {r[0], r[1], r[2], r[3], r[4], r[5]};
        Py_BEGIN_ALLOW_THREADS
        canna_lean_backward(DATA(b[0], uint32_t), b[0].view.len / 4, ranges, k_w, k_x,
                            want_w, want_x, &ok_w, &ok_x);
        Py_END_ALLOW_THREADS
        release(b, 1);
    }
    return Py_BuildValue("(OO)", ok_w ? Py_True : Py_False, ok_x ? Py_True : Py_False);
}

static PyMethodDef methods[] = {
    {"transform_checked", transform_checked, METH_VARARGS,
     "transform_checked(w, rows, cols, t, dual, mq, wn, nq, nn, row_flags, stats[, qual_cols, nz_rows, nz_cols])"},
    {"sgd_transform", sgd_transform, METH_VARARGS,
     "sgd_transform(w, v, g, momentum, lr, rows, cols, t, dual, mq, wn, nq, nn, row_flags, stats, "
     "qual_cols, nz_rows, nz_cols): v = momentum v - lr g; w += v (float32, in place), then "
     "transform_checked of the new w"},
    {"scan_first", scan_first, METH_VARARGS,
     "scan_first(a, rows, cols, t, dual, row_flags, stats, ma, cnt_normal, cnt_q, risky) -> count"},
    {"scan_first_quick", scan_first_quick, METH_VARARGS,
     "scan_first_quick(a, nq32, n, q_lo, q_hi, b_e_max[, nz32]) -> hits, or -1: take the general path; "
     "with nz32: (hits, nonzero products)"},
    {"scan_first_quick_t", scan_first_quick_t, METH_VARARGS,
     "scan_first_quick_t(at, nq32, n, q_lo, q_hi, b_e_max[, nz32]): scan_first_quick of a first "
     "operand given as its C-contiguous transpose at (len(nq32) rows)"},
    {"transform_lean", transform_lean, METH_VARARGS,
     "transform_lean(w, t, mq) -> (pow2_lo, pow2_hi, e_max, mag_min1, mag_max), or None: policy b's "
     "transform of w into mq without counts (canna.torch's lean branch)"},
    {"lean_forward", lean_forward, METH_VARARGS,
     "lean_forward(x, w, k, t_w, t_x, mw, mx) -> the ranges, or None: canna.torch's lean forward "
     "(transforms of w and, mx not None, of x; the forward verdict at inner size k, -1: matrices)"},
    {"lean_backward", lean_backward, METH_VARARGS,
     "lean_backward(g, ranges, k_w, k_x, want_w, want_x) -> (gradient served, backward error served)"},
    {"magnitude_range", magnitude_range, METH_VARARGS,
     "magnitude_range(x) -> (min(|x| - 1), max(|x|)) over the binary32 patterns of x"},
    {"lean_verdict", lean_verdict, METH_VARARGS,
     "lean_verdict(mag_min1, mag_max, k, q_lo, q_hi, b_e_max) -> whether the lean path serves a "
     "matmul of inner size k (scan_first_quick's verdict without the hit count)"},
    {"max_finite_exponent", max_finite_exponent, METH_VARARGS,
     "max_finite_exponent(x) -> the largest exponent field of the finite binary32 patterns in x"},
    {"count_nonzero_finite", count_nonzero_finite, METH_VARARGS,
     "count_nonzero_finite(x, rows, cols, row_counts, col_counts): nonzero finite elements per row "
     "(int64) and per column (uint32); either may be None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastkernels",
                                    "Fast approximate matmul kernels (sim/fastkernels.c).", -1, methods};

static const CannaLeanApi lean_api = {canna_lean_forward, canna_lean_backward};

PyMODINIT_FUNC PyInit__fastkernels(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    PyObject *capsule = PyCapsule_New((void *)&lean_api, "_fastkernels.lean_api", NULL);
    if (capsule == NULL || PyModule_AddObject(m, "lean_api", capsule) < 0) {
        Py_XDECREF(capsule);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
