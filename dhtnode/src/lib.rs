//! dhtnode (thin for now).
