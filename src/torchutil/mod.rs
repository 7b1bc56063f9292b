//! Tensor pieces that several stages use: the device a config names ([`device`]), images as a
//! network's input ([`input`]), Adam with its state in plain tensors ([`adam`]).

pub mod adam;
pub mod device;
pub mod input;
