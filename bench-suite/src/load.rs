//! The machine's load when a timing is taken: declared with the rest of the record schema (the
//! report reads what the grid writes).

pub use record_schema::LoadSnapshot;
