// CFPULinear's lean branch as a C++ autograd Function (canna/torch/layers.py decides when it
// applies; canna/torch/native.py builds this file). Why C++: inside a training step the Python
// autograd Function and the Python around its kernel calls cost 0.02-0.08 of a native MLP step
// (docs/torch.md), more than the kernels. The arithmetic is the Python lean branch's, call for
// call (the same kernels through _fastkernels' capsule, the same GEMMs, the bias added after the
// GEMM), so the bits are the same (tests/torch/test_lean_cpp.py). A backward phase whose verdict
// declines, or a backward under float32 GEMM settings that changed since the forward, goes back
// to Python: layers.lean_general_phase (the general path), after engine.float32_gemm_now.
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/extension.h>

extern "C" {
#include "fastkernels.h"
}

namespace {

const CannaLeanApi *kernels = nullptr;
// canna.torch.layers and canna.torch.engine, whose lean_general_phase and float32_gemm_now are
// looked up per call (a test may replace them); never freed: no destructor after Python's end
py::object *layers_module = nullptr, *engine_module = nullptr;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

const uint32_t *bits(const at::Tensor &t) { return reinterpret_cast<const uint32_t *>(t.data_ptr<float>()); }

uint32_t *bits_out(at::Tensor &t) { return reinterpret_cast<uint32_t *>(t.data_ptr<float>()); }

// What the Python branch's .numpy() views and the module's buffer checks accept: a dense,
// C-contiguous float32 CPU matrix without a conjugate or negative bit.
bool plain_matrix(const at::Tensor &t)
{
    return t.defined() && t.device().is_cpu() && t.layout() == at::kStrided
           && t.scalar_type() == at::kFloat && t.dim() == 2 && t.is_contiguous() && !t.is_conj()
           && !t.is_neg() && t.has_storage();
}

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
        bool lean;
        {
            py::gil_scoped_acquire gil;
            lean = engine_module->attr("float32_gemm_now")().cast<bool>();     // (precision or autocast set since the forward?)
        }
        if (lean) {
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

    // What Python's once_differentiable does: the gradients come out of a node that raises when
    // they are differentiated (the CFPU's backward has no derivative of its own).
    static variable_list refuse_second_backward(variable_list out)
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
    return py::cast(LeanLinear::apply(x, w, has_bias ? *bias : at::empty({0}, x.options()), mw, mx,
                                      ranges, t_w, t_x, path, has_bias, with_x));
}

void set_kernels(py::capsule api, py::object layers, py::object engine)
{
    kernels = static_cast<const CannaLeanApi *>(api.get_pointer());
    layers_module = new py::object(layers);
    engine_module = new py::object(engine);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("lean_linear", &lean_linear, "CFPULinear's lean forward, or None (see the file's head)");
    m.def("set_kernels", &set_kernels, "set_kernels(capsule, canna.torch.layers, canna.torch.engine)");
}
