// The lean branches of CFPULinear and CFPUConv2d as C++ autograd Functions (canna/torch/layers.py
// and conv.py decide when they apply; canna/torch/native.py builds this file). Why C++: inside a
// training step the Python autograd Function and the Python around its kernel calls cost
// 0.02-0.08 of a native step (docs/torch.md), more than the kernels. The arithmetic is the Python
// lean branches', call for call (the same kernels through _fastkernels' capsule, the same GEMMs
// and convolutions, the bias added where Python adds it), so the bits are the same
// (tests/torch/test_lean_cpp.py). A backward phase whose verdict declines, or a backward under
// float32 settings that changed since the forward (or, for a convolution, with counters attached
// since), goes back to Python: layers.lean_general_phase, conv.lean_backward.
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/extension.h>

extern "C" {
#include "fastkernels.h"
}

namespace {

const CannaLeanApi *kernels = nullptr;
// canna.torch.layers, .conv and .engine, whose functions are looked up per call (a test may
// replace them); never freed: no destructor after Python's end
py::object *layers_module = nullptr, *conv_module = nullptr, *engine_module = nullptr;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

const uint32_t *bits(const at::Tensor &t) { return reinterpret_cast<const uint32_t *>(t.data_ptr<float>()); }

uint32_t *bits_out(at::Tensor &t) { return reinterpret_cast<uint32_t *>(t.data_ptr<float>()); }

// What the Python branches' .numpy() views and the module's buffer checks accept: a dense,
// C-contiguous float32 CPU tensor of `dim` dimensions without a conjugate or negative bit.
bool plain(const at::Tensor &t, int64_t dim)
{
    return t.defined() && t.device().is_cpu() && t.layout() == at::kStrided
           && t.scalar_type() == at::kFloat && t.dim() == dim && t.is_contiguous() && !t.is_conj()
           && !t.is_neg() && t.has_storage();
}

bool plain_matrix(const at::Tensor &t) { return plain(t, 2); }

// What Python's once_differentiable does: the gradients come out of a node that raises when
// they are differentiated (the CFPU's backward has no derivative of its own).
variable_list refuse_second_backward(variable_list out)
{
    auto error = std::make_shared<torch::autograd::DelayedError>(
        "trying to differentiate twice a function that was marked with @once_differentiable",
        (int64_t)out.size());
    for (auto &v : out)
        if (v.defined()) {
            v = v.detach();
            v.requires_grad_(true);
        }
    return (*error)(std::move(out));
}

bool ask(py::object *module, const char *predicate)
{
    py::gil_scoped_acquire gil;
    return module->attr(predicate)().cast<bool>();
}

// A weak reference to a Python object (the convolution layer) kept in an autograd context: a
// strong one would close a cycle the garbage collector cannot see (layer -> an output it keeps
// -> this node -> layer). Released with the GIL.
struct PyRef : torch::CustomClassHolder {
    py::object obj;     // the weakref
    explicit PyRef(py::handle o) : obj(py::weakref(o)) {}
    py::object get() const { return obj(); }      // the object, or None once it is gone
    ~PyRef() override
    {
        if (!Py_IsInitialized()) {      // the interpreter is gone: nothing to release into
            obj.release();
            return;
        }
        py::gil_scoped_acquire gil;
        obj = py::object();
    }
};

// PyTorch's own switch, as conv.py's _NoNNPACK: NNPACK may use Winograd, whose products are not
// the ones formed.
struct NoNNPACK {
    bool was = at::globalContext().userEnabledNNPACK();
    NoNNPACK() { if (was) at::globalContext().setUserEnabledNNPACK(false); }
    ~NoNNPACK() { if (was) at::globalContext().setUserEnabledNNPACK(true); }
};

struct LeanLinear : public torch::autograd::Function<LeanLinear> {
    // x @ M(w).T (+ bias); mw, mx: the transforms made before. An input apply() is given must be
    // a defined tensor: without a bias or M(x) (no weight gradient) they are empty ones, and
    // has_bias / has_mx say so.
    static at::Tensor forward(AutogradContext *ctx, at::Tensor x, at::Tensor w, at::Tensor bias,
                              at::Tensor mw, at::Tensor mx, std::vector<int64_t> ranges,
                              int64_t t_w, int64_t t_x, std::string path, bool has_bias, bool has_mx)
    {
        ctx->save_for_backward({x, w, mw, mx});
        ctx->saved_data["has_mx"] = has_mx;
        ctx->saved_data["ranges"] = ranges;
        ctx->saved_data["t_w"] = t_w;
        ctx->saved_data["t_x"] = t_x;
        ctx->saved_data["path"] = path;
        at::Tensor y = at::mm(x, mw.t());
        return has_bias ? y + bias : y;
    }

    static variable_list backward(AutogradContext *ctx, variable_list grads)
    {
        variable_list saved = ctx->get_saved_variables();      // (raises if x or w changed in place)
        at::Tensor x = saved[0], w = saved[1], mw = saved[2], mx = saved[3];
        const bool want_x = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
        const bool want_b = ctx->needs_input_grad(2), has_mx = ctx->saved_data["has_mx"].toBool();
        at::Tensor grad = grads[0];
        const bool twice = at::GradMode::is_enabled() && grad.requires_grad();   // create_graph
        at::NoGradGuard no_grad;
        std::vector<int64_t> r = ctx->saved_data["ranges"].toIntVector();
        const int64_t t_w = ctx->saved_data["t_w"].toInt(), t_x = ctx->saved_data["t_x"].toInt();
        const std::string path = ctx->saved_data["path"].toStringRef();
        int ok_w = 0, ok_x = 0;
        if (ask(engine_module, "float32_gemm_now")) {    // (precision or autocast set since the forward?)
            grad = grad.contiguous();
            if (plain_matrix(grad))
                kernels->lean_backward(bits(grad), grad.numel(), r.data(), grad.size(0), grad.size(1),
                                       want_w && has_mx, want_x, &ok_w, &ok_x);
        }
        variable_list out(11);
        if (want_w)          // the NumPy driver's order: gradient first
            out[1] = ok_w ? at::mm(grad.t(), mx) : general("gradient", t_w, t_x, path, x, grad);
        if (want_x)
            out[0] = ok_x ? at::mm(grad, mw) : general("backward", t_w, t_x, path, grad, w);
        if (want_b)
            out[2] = grad.sum(0);
        return twice ? refuse_second_backward(out) : out;
    }

    static at::Tensor general(const char *phase, int64_t t_w, int64_t t_x, const std::string &path,
                              const at::Tensor &a, const at::Tensor &b)
    {
        py::gil_scoped_acquire gil;
        return layers_module->attr("lean_general_phase")(phase, t_w, t_x, path, a, b).cast<at::Tensor>();
    }
};

// The lean forward of nn.Linear's x @ w.T (+ bias), or None where the lean branch does not serve
// it (operands, a transform's or the verdict's decline): the caller's Python route then does.
// with_x: transform x for the weight gradient (grad enabled and w requires grad).
py::object lean_linear(const at::Tensor &x, const at::Tensor &w, const c10::optional<at::Tensor> &bias,
                       int64_t t_w, int64_t t_x, bool with_x, const std::string &path)
{
    if (kernels == nullptr)
        throw std::runtime_error("lean_linear: set_kernels was not called");
    if (!plain_matrix(x) || !plain_matrix(w) || x.size(1) != w.size(1))
        return py::none();
    if (t_w < 0 || t_w > 22 || t_x < 0 || t_x > 22)
        throw std::invalid_argument("lean_linear: tuning bits outside 0..22");
    at::Tensor mw = at::empty_like(w, at::MemoryFormat::Contiguous);
    at::Tensor mx = with_x ? at::empty_like(x, at::MemoryFormat::Contiguous) : at::empty({0}, x.options());
    std::vector<int64_t> ranges(6);
    int served;
    {
        py::gil_scoped_release nogil;
        served = kernels->lean_forward(bits(x), x.numel(), bits(w), w.numel(), x.size(1), (int)t_w,
                                       (int)t_x, bits_out(mw), with_x ? bits_out(mx) : nullptr,
                                       ranges.data());
    }
    if (!served)
        return py::none();
    const bool has_bias = bias.has_value() && bias->defined();
    at::Tensor y;
    {
        py::gil_scoped_release nogil;      // (as PyTorch's own bindings run their GEMMs)
        y = LeanLinear::apply(x, w, has_bias ? *bias : at::empty({0}, x.options()), mw, mx, ranges,
                              t_w, t_x, path, has_bias, with_x);
    }
    return py::cast(y);
}

// CFPUConv2d's lean route (conv.py's _CFPUConv with ctx.lean set): the forward and each native
// backward phase one PyTorch convolution on M(w) or M(x); a convolution of groups 1, its padding
// already numbers. layer: the CFPUConv2d (its routes, and the general path's arguments).
struct LeanConv : public torch::autograd::Function<LeanConv> {
    static at::Tensor forward(AutogradContext *ctx, at::Tensor x, at::Tensor w, at::Tensor bias,
                              at::Tensor mw, at::Tensor mx, std::vector<int64_t> ranges,
                              std::vector<int64_t> stride, std::vector<int64_t> padding,
                              std::vector<int64_t> dilation, bool has_bias, bool has_mx,
                              c10::IValue layer)
    {
        ctx->save_for_backward({x, w, mw, mx});    // the inputs as given: in-place changes show
        ctx->saved_data["ranges"] = ranges;
        ctx->saved_data["stride"] = stride;
        ctx->saved_data["padding"] = padding;
        ctx->saved_data["dilation"] = dilation;
        ctx->saved_data["has_mx"] = has_mx;
        ctx->saved_data["layer"] = layer;
        NoNNPACK off;
        return at::conv2d(x.contiguous(), mw, has_bias ? c10::optional<at::Tensor>(bias) : c10::nullopt,
                          stride, padding, dilation, 1);
    }

    static variable_list backward(AutogradContext *ctx, variable_list grads)
    {
        variable_list saved = ctx->get_saved_variables();
        at::Tensor x = saved[0].detach().contiguous(), w = saved[1].detach().contiguous();
        at::Tensor mw = saved[2], mx = saved[3];
        const bool want_x = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
        const bool want_b = ctx->needs_input_grad(2), has_mx = ctx->saved_data["has_mx"].toBool();
        at::Tensor grad = grads[0];
        const bool twice = at::GradMode::is_enabled() && grad.requires_grad();
        at::NoGradGuard no_grad;
        grad = grad.detach().contiguous();
        std::vector<int64_t> r = ctx->saved_data["ranges"].toIntVector();
        std::vector<int64_t> stride = ctx->saved_data["stride"].toIntVector();
        std::vector<int64_t> padding = ctx->saved_data["padding"].toIntVector();
        std::vector<int64_t> dilation = ctx->saved_data["dilation"].toIntVector();
        auto layer = c10::static_intrusive_pointer_cast<PyRef>(ctx->saved_data["layer"].toCapsule());
        int ok_w = 0, ok_x = 0;
        bool lean;
        {
            py::gil_scoped_acquire gil;
            lean = conv_module->attr("lean_backward_ok")(layer->get()).cast<bool>();
        }
        if (lean && plain(grad, 4)) {
            // inner sizes: the weight gradient sums over batch and positions, the backward
            // error over the output channels and the kernel's positions
            const int64_t k_w = grad.size(0) * grad.size(2) * grad.size(3);
            const int64_t k_x = w.size(0) * w.size(2) * w.size(3);
            kernels->lean_backward(bits(grad), grad.numel(), r.data(), k_w, k_x, want_w && has_mx,
                                   want_x, &ok_w, &ok_x);
        }
        variable_list out(12);
        if (!want_w && !want_x) {
            if (want_b)
                out[2] = grad.sum({0, 2, 3});
        } else if ((ok_w || !want_w) && (ok_x || !want_x)) {   // every wanted phase native: one call
            {
                py::gil_scoped_acquire gil;
                py::object conv = layer->get();
                if (!conv.is_none()) {
                    py::object routes = conv.attr("routes");
                    if (ok_w)
                        routes["gradient"] = "native";
                    if (ok_x)
                        routes["backward"] = "native";
                }
            }
            NoNNPACK off;
            std::vector<int64_t> bias_sizes{w.size(0)};
            auto [gx, gw, gb] = at::convolution_backward(
                grad, ok_w ? mx : x, ok_x ? mw : w,
                want_b ? at::OptionalIntArrayRef(bias_sizes) : at::OptionalIntArrayRef(c10::nullopt),
                stride, padding, dilation, false, {0, 0}, 1, {(bool)ok_x, (bool)ok_w, want_b});
            out[0] = gx;
            out[1] = gw;
            out[2] = gb;
        } else {      // conv.py's backward from the lean context: per phase as there
            py::gil_scoped_acquire gil;
            py::object ranges = py::tuple(py::cast(r));
            py::tuple g = conv_module->attr("lean_backward")(
                layer->get(), py::tuple(py::cast(padding)), x, w, grad, mw,
                has_mx ? py::cast(mx) : py::none(), ranges, want_x, want_w, want_b);
            for (int i = 0; i < 3; i++)
                if (!g[i].is_none())
                    out[i] = g[i].cast<at::Tensor>();
        }
        return twice ? refuse_second_backward(out) : out;
    }
};

// The lean forward of a CFPUConv2d (groups 1, zero padding given as numbers), or None where the
// lean route does not serve it (a transform's or the verdict's decline): conv.py's route then
// does. with_x: transform x for the weight gradient (grad enabled and w requires grad).
py::object lean_conv(const at::Tensor &x, const at::Tensor &w, const c10::optional<at::Tensor> &bias,
                     std::vector<int64_t> stride, std::vector<int64_t> padding,
                     std::vector<int64_t> dilation, int64_t t_w, int64_t t_x, bool with_x,
                     py::object layer)
{
    if (kernels == nullptr)
        throw std::runtime_error("lean_conv: set_kernels was not called");
    at::Tensor xc = x.contiguous(), wc = w.contiguous();
    if (!plain(xc, 4) || !plain(wc, 4))
        return py::none();
    if (t_w < 0 || t_w > 22 || t_x < 0 || t_x > 22)
        throw std::invalid_argument("lean_conv: tuning bits outside 0..22");
    at::Tensor mw = at::empty_like(wc), mx = with_x ? at::empty_like(xc) : at::empty({0}, x.options());
    std::vector<int64_t> ranges(6);
    int served;
    {
        py::gil_scoped_release nogil;
        served = kernels->lean_forward(bits(xc), xc.numel(), bits(wc), wc.numel(),
                                       wc.size(1) * wc.size(2) * wc.size(3), (int)t_w, (int)t_x,
                                       bits_out(mw), with_x ? bits_out(mx) : nullptr, ranges.data());
    }
    if (!served)
        return py::none();
    const bool has_bias = bias.has_value() && bias->defined();
    c10::IValue ref = c10::IValue::make_capsule(c10::make_intrusive<PyRef>(layer));
    at::Tensor y;
    {
        py::gil_scoped_release nogil;
        y = LeanConv::apply(x, w, has_bias ? *bias : at::empty({0}, x.options()), mw, mx, ranges,
                            stride, padding, dilation, has_bias, with_x, std::move(ref));
    }
    return py::cast(y);
}

void set_kernels(py::capsule api, py::object layers, py::object conv, py::object engine)
{
    kernels = static_cast<const CannaLeanApi *>(api.get_pointer());
    layers_module = new py::object(layers);
    conv_module = new py::object(conv);
    engine_module = new py::object(engine);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("lean_linear", &lean_linear, "CFPULinear's lean forward, or None (see the file's head)");
    m.def("lean_conv", &lean_conv, "CFPUConv2d's lean forward, or None (see the file's head)");
    m.def("set_kernels", &set_kernels, "set_kernels(capsule, canna.torch.layers, .conv, .engine)");
}
