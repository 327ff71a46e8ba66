//! logfilesnode (thin for now).
