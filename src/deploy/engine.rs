//! Engine adapter (being written).
