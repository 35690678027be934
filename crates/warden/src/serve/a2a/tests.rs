//! Unit tests of the A2A endpoint.
