//! Small shared helpers: durable atomic writes, running external programs,
//! and human size strings.

pub mod atomic;
pub mod command;
pub mod size;
