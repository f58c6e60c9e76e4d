//! Operating a console from elsewhere (README.md, "Operating ringwatch"):
//! the credential file an operator holds, and the terminal UI's handle on a
//! remote console.

pub mod bundle;
pub mod console;
