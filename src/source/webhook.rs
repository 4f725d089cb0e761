//! HTTP intake (being written).
