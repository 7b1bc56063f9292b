//! LeakyReLU with the paper's slope (0.2) as one libtorch op, forward and backward.
//!
//! tch's `leaky_relu` cannot take a slope (its generated API drops scalar arguments that have a
//! default, so the slope is libtorch's 0.01). A PReLU with a fixed slope computes the same values,
//! but its backward also computes the slope's gradient, a full-size product and a reduction per
//! layer that nobody uses: PyTorch's own step ran at 0.93x with it on the CPU (docs/train.md). `leaky_relu.cpp`, built by
//! build.rs against the same libtorch headers, calls `at::leaky_relu` directly.

use std::ffi::{c_char, c_int, CStr};

use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn dcgan_leaky_relu(
        x: *const C_tensor,
        slope: f64,
        in_place: c_int,
        error: *mut c_char,
        error_len: usize,
    ) -> *mut C_tensor;
}

fn call(x: &Tensor, slope: f64, in_place: bool) -> Tensor {
    let mut error = [0 as c_char; 512];
    // SAFETY: `x` is a live tch tensor; on success the shim returns a new heap tensor handle that
    // the returned Tensor owns (tch frees it on drop), on failure null and a NUL-terminated message.
    let ptr = unsafe { dcgan_leaky_relu(x.as_ptr(), slope, in_place as c_int, error.as_mut_ptr(), error.len()) };
    if ptr.is_null() {
        let why = unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy();
        panic!("leaky_relu: {why}");
    }
    unsafe { Tensor::from_ptr(ptr) }
}

/// max(x, 0) + slope * min(x, 0), a new tensor.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Tensor {
    call(x, slope, false)
}

/// The same in place (x's storage is overwritten; the returned tensor shares it). For a tensor
/// nothing else needs unchanged: a BatchNorm's or a convolution's output, whose backward reads its
/// input, not its output. Autograd refuses it where that is not so.
pub fn leaky_relu_(x: &mut Tensor, slope: f64) -> Tensor {
    call(x, slope, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Forward and input gradient of `f` on `x`.
    fn with_grad(x: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> (Tensor, Tensor) {
        let x = x.detach().copy().set_requires_grad(true);
        let weights = Tensor::linspace(-1.0, 2.0, x.numel() as i64, (Kind::Float, Device::Cpu)).view_as(&x);
        // A non-leaf input, as in a network (in-place ops on a leaf that requires grad are refused).
        let y = f(&(&x * 1.0));
        (&y * &weights).sum(Kind::Float).backward();
        (y.detach(), x.grad())
    }

    #[test]
    fn equals_prelu_with_the_same_fixed_slope_bitwise_forward_and_backward() {
        tch::manual_seed(3);
        let x = Tensor::randn([4, 8, 5, 5], (Kind::Float, Device::Cpu));
        let _ = x.narrow(3, 0, 1).fill_(0.0); // zeros take the negative side's gradient in both
        let slope = Tensor::full([1], 0.2, (Kind::Float, Device::Cpu));
        let (y_prelu, g_prelu) = with_grad(&x, |x| x.prelu(&slope));
        let (y_new, g_new) = with_grad(&x, |x| leaky_relu(x, 0.2));
        let (y_in_place, g_in_place) = with_grad(&x, |x| leaky_relu_(&mut x.shallow_clone(), 0.2));
        assert!(y_new.equal(&y_prelu) && y_in_place.equal(&y_prelu));
        assert!(g_new.equal(&g_prelu) && g_in_place.equal(&g_prelu));
        // And it is the slope 0.2, not libtorch's default 0.01.
        let at = |v: f64| f64::try_from(leaky_relu(&Tensor::from_slice(&[v as f32]), 0.2)).unwrap();
        assert_eq!((at(-1.0), at(0.5)), (-0.2f32 as f64, 0.5));
    }

    #[test]
    fn in_place_overwrites_its_input() {
        let mut x = Tensor::from_slice(&[-2.0f32, 3.0]);
        let y = leaky_relu_(&mut x, 0.2);
        assert_eq!(Vec::<f32>::try_from(&x).unwrap(), vec![-0.4, 3.0]);
        assert_eq!(y.data_ptr(), x.data_ptr());
    }

    #[test]
    fn a_bad_input_is_an_error_with_libtorchs_message() {
        let ints = Tensor::from_slice(&[1i64, -2]);
        let err = std::panic::catch_unwind(|| leaky_relu(&ints, 0.2)).unwrap_err();
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.starts_with("leaky_relu: ") && msg.len() > "leaky_relu: ".len(), "{msg}");
    }
}
