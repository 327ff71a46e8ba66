//! queuenode (thin for now).
