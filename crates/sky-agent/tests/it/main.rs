//! Integration tests: real agents (head + workers) on loopback, real `bash` processes.

mod autostop;
mod jobs;
mod lifecycle;
mod support;
