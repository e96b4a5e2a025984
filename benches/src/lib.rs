//! pdist's benchmarks. `benches/` holds the criterion micro-benchmarks; `src/bin/` the programs
//! that run whole scenarios side by side with the tool a user would otherwise use.

pub mod args;
pub mod chart;
pub mod lab;
pub mod swarm;
