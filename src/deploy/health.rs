//! Health gate (being written).
