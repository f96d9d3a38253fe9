//! The image pipeline, one file per concern: benchmark layouts and class orders
//! (`benchmarks.rs`), class folders and image lists (`image_list.rs`), JPEG/PNG decoding
//! (`decode.rs`), the protocols' transforms (`transform.rs`), the decoded cache
//! (`decoded_cache.rs`), batches, workers and normalisation (`pipeline.rs`), and loading a whole
//! image task (`image_task.rs`).

pub mod benchmarks;
pub mod decode;
pub mod decoded_cache;
pub mod image_list;
pub mod image_task;
pub mod pipeline;
pub mod transform;
