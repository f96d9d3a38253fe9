//! The README's example (examples/own_training.rs) compiles and runs.

#[path = "../examples/own_training.rs"]
mod own_training;

#[test]
fn the_own_training_example_runs() {
    own_training::main().unwrap();
}
