//! Recreate a container (being written).
