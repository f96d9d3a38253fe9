use std::path::Path;

fn main() {
    libtorch_link::emit_link_args();
    compile_context_shim();
}

/// cpp/context.cpp against the libtorch torch-sys linked (its headers sit beside its lib folder),
/// with the C++ ABI of the PyTorch wheels (C++17, the new libstdc++ ABI).
fn compile_context_shim() {
    println!("cargo:rerun-if-changed=cpp/context.cpp");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect("DEP_TCH_LIBTORCH_LIB (torch-sys is a direct dependency)");
    let root = Path::new(&lib).parent().expect("libtorch's lib folder has a parent");
    let include = root.join("include");
    cc::Build::new()
        .cpp(true)
        .file("cpp/context.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("gh_context");
}
