//! Integration tests: real agents (head + workers) on loopback, real `bash` processes.

mod autostop;
mod fuzz;
mod jobs;
mod lifecycle;
mod limits;
mod secrets;
mod support;
