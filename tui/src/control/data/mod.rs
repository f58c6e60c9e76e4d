//! The data store's console side (README.md, "Data"; ARCHITECTURE.md,
//! "The data store"): the catalog the owner keeps, and the connection
//! handlers that move an object's bytes between a client and the agents
//! that hold it.

pub mod catalog;
