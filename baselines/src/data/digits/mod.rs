//! The digits datasets, one reader per format: MNIST (IDX), USPS (LIBSVM text), SVHN (MATLAB v5),
//! and your own digit-like image folders read at the digits sizes. What they share (formats,
//! normalisation, split stand-ins) is in `data/mod.rs`.

pub mod mnist;
pub mod own_digits;
pub mod svhn;
pub mod usps;
