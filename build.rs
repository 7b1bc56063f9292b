//! Links the stage binaries so that they find libtorch without LD_LIBRARY_PATH.
//!
//! torch-sys (links = "tch") tells its direct dependents where libtorch lives through
//! DEP_TCH_LIBTORCH_LIB. We put that folder in every binary's RUNPATH.
//!
//! Binaries that run models (train, dedupe, cifar-eval, sample) must also keep libtorch_cuda in NEEDED: rustc
//! links with --as-needed, which drops it because no symbol of ours refers to it, and CUDA would
//! then look unavailable even on a GPU machine. That is done per binary (`TORCH_BINS`), not for
//! all: loading libtorch costs ~0.5 s at start-up, which the image stages (crop, faces) should not
//! pay when they never touch a tensor.
//!
//! It compiles src/imageops/libjpeg_checked.c against the system's libjpeg(-turbo), and
//! src/torchutil/leaky_relu.cpp (LeakyReLU with a slope, which tch's API cannot
//! pass) against the same libtorch's headers, as torch-sys compiles its own C++.
use std::path::{Path, PathBuf};

/// Binaries that run models on the GPU when there is one.
const TORCH_BINS: &[&str] = &["train", "cifar-eval", "dedupe", "sample"];

fn main() {
    compile_libjpeg_shim();
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    compile_shim(Path::new(&lib));
    // Without LTO (the test-release profile), OpenCV's C++ wrapper objects come into train's link with
    // dead code, and their exported inline functions would keep OpenCV calls alive: keep every
    // archive's symbols out of train's dynamic symbol table.
    println!("cargo:rustc-link-arg-bin=train=-Wl,--exclude-libs,ALL");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        for bin in TORCH_BINS {
            for arg in ["-Wl,--no-as-needed", "-ltorch_cuda", "-Wl,--as-needed"] {
                println!("cargo:rustc-link-arg-bin={bin}={arg}");
            }
        }
    }
}

/// The C half of src/imageops/libjpeg.rs: libjpeg-turbo (the system's, as OpenCV uses) with an
/// error manager that reports corrupt data instead of printing it.
fn compile_libjpeg_shim() {
    const SOURCE: &str = "src/imageops/libjpeg_checked.c";
    println!("cargo:rerun-if-changed={SOURCE}");
    cc::Build::new().file(SOURCE).flag("-std=c99").compile("dcgan_libjpeg_checked");
    println!("cargo:rustc-link-lib=jpeg");
}

/// The C++ half of src/torchutil/leaky_relu.rs, with libtorch's headers (`<libtorch>/include`, next
/// to its lib folder, in a wheel and in a libtorch download alike) and torch-sys's C++ ABI setting.
fn compile_shim(lib: &Path) {
    const SOURCE: &str = "src/torchutil/leaky_relu.cpp";
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include: PathBuf = lib.parent().map(|p| p.join("include")).unwrap_or_default();
    if !include.join("ATen").is_dir() {
        panic!("{}: no libtorch headers (ATen/) next to libtorch's lib folder {}", include.display(), lib.display());
    }
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .file(SOURCE)
        .include(&include)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .warnings(false)
        .compile("dcgan_torch_shim");
}
