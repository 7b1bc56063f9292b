//! Tensor pieces beneath the stages (train, cifar-eval, dedupe's autoencoder): the device a config
//! names ([`device`]), images as a network's input ([`input`]), Adam with its state in plain
//! tensors ([`adam`]), LeakyReLU with a slope ([`leaky_relu`]).

pub mod adam;
pub mod device;
pub mod input;
pub mod leaky_relu;
