//! CESQL's three types: what literals parse to and evaluation yields.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Integer(i32),
    String(String),
    Boolean(bool),
}
