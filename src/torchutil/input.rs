//! Images as the networks take them.

use tch::{Kind, Tensor};

/// Images (uint8 N x H x W x 3) to the networks' input (float N x 3 x H x W in [-1, 1]).
pub fn to_network_input(images_u8: &Tensor) -> Tensor {
    images_u8.permute([0, 3, 1, 2]).to_kind(Kind::Float) / 127.5 - 1.0
}
