//! Integration tests of `sky-catalog` against the bundled tables.

mod bundled;
