//! Pictures that several stages make: RGB tiles laid out in a grid ([`grid`]) and PNGs as data
//! URIs for self-contained pages ([`data_uri`]).

pub mod data_uri;
pub mod grid;
