//! Library behind the `report` binary.
