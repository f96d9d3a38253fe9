//! Library behind the `data-fetch` binary.
