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

static PyObject *max_finite_exponent(PyObject *self, PyObject *args)
{
    PyObject *x;
    if (!PyArg_ParseTuple(args, "O:max_finite_exponent", &x))
        return NULL;
    Buf b[1];
    if (take(x, &b[0], "x", 4, 0, 0, 0) < 0) {
        release(b, 1);
        return NULL;
    }
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
    {"max_finite_exponent", max_finite_exponent, METH_VARARGS,
     "max_finite_exponent(x) -> the largest exponent field of the finite binary32 patterns in x"},
    {"count_nonzero_finite", count_nonzero_finite, METH_VARARGS,
     "count_nonzero_finite(x, rows, cols, row_counts, col_counts): nonzero finite elements per row "
     "(int64) and per column (uint32); either may be None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastkernels",
                                    "Fast approximate matmul kernels (sim/fastkernels.c).", -1, methods};

PyMODINIT_FUNC PyInit__fastkernels(void) { return PyModule_Create(&module); }
