//! Adam with its state in plain tensors, so that a checkpoint holds it and a resumed run continues
//! exactly where it stopped (tch's optimiser keeps its moments out of reach).
//!
//! The update is PyTorch's: m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
//! p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).

use std::path::Path;

use tch::{nn, Tensor};

pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Updates done so far (t).
    pub steps: i64,
    names: Vec<String>,
    params: Vec<Tensor>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
}

impl Adam {
    /// Over every trainable variable of `vs`, in name order.
    pub fn new(vs: &nn::VarStore, lr: f64, beta1: f64, beta2: f64) -> Self {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, params): (Vec<String>, Vec<Tensor>) = named.into_iter().unzip();
        let exp_avg = params.iter().map(Tensor::zeros_like).collect();
        let exp_avg_sq = params.iter().map(Tensor::zeros_like).collect();
        Self { lr, beta1, beta2, eps: 1e-8, steps: 0, names, params, exp_avg, exp_avg_sq }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    pub fn step(&mut self) {
        self.steps += 1;
        let t = self.steps as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2_sqrt = (1.0 - self.beta2.powi(t)).sqrt();
        tch::no_grad(|| {
            for ((p, m), v) in self.params.iter_mut().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq) {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                // In place where libtorch allows, as torch.optim.Adam does.
                let _ = m.lerp_(&g, 1.0 - self.beta1);
                let _ = v.g_mul_scalar_(self.beta2).addcmul_(&g, &(&g * (1.0 - self.beta2)));
                let mut denom = v.sqrt();
                let _ = denom.g_mul_scalar_(1.0 / bias2_sqrt).g_add_scalar_(self.eps);
                let _ = p.addcdiv_(&(&*m * (-self.lr / bias1)), &denom);
            }
        });
    }

    /// Saves the moments and the step count as safetensors.
    pub fn save(&self, path: &Path) -> Result<(), tch::TchError> {
        let mut named: Vec<(String, Tensor)> = Vec::with_capacity(2 * self.names.len() + 1);
        for (i, name) in self.names.iter().enumerate() {
            named.push((format!("exp_avg.{name}"), self.exp_avg[i].to_device(tch::Device::Cpu).contiguous()));
            named.push((format!("exp_avg_sq.{name}"), self.exp_avg_sq[i].to_device(tch::Device::Cpu).contiguous()));
        }
        named.push(("steps".into(), Tensor::from_slice(&[self.steps])));
        Tensor::write_safetensors(&named, path)
    }

    pub fn load(&mut self, path: &Path) -> Result<(), tch::TchError> {
        let stored: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(path)?.into_iter().collect();
        let get = |key: &str| {
            stored.get(key).ok_or_else(|| tch::TchError::FileFormat(format!("{}: no tensor {key}", path.display())))
        };
        tch::no_grad(|| -> Result<(), tch::TchError> {
            for (i, name) in self.names.iter().enumerate() {
                self.exp_avg[i].copy_(get(&format!("exp_avg.{name}"))?);
                self.exp_avg_sq[i].copy_(get(&format!("exp_avg_sq.{name}"))?);
            }
            Ok(())
        })?;
        self.steps = i64::try_from(get("steps")?)?;
        Ok(())
    }
}
