fn main() {
    libtorch_link::emit_link_args();
}
