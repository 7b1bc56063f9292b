//! Links the stage binaries so that they find libtorch without LD_LIBRARY_PATH.
//!
//! torch-sys (links = "tch") tells its direct dependents where libtorch lives through
//! DEP_TCH_LIBTORCH_LIB. We put that folder in the binaries' RUNPATH, and keep libtorch_cuda in
//! NEEDED: rustc links with --as-needed, which would otherwise drop it because no symbol of ours
//! refers to it, and CUDA would then look unavailable even on a GPU machine.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
