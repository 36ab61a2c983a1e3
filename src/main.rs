//! The `spm` binary: parse the command line, initialise logging, dispatch, map errors to
//! exit codes (0 ok, 1 "the answer is no", 2 error).

use std::process::ExitCode;

fn main() -> ExitCode {
    spm::cli::main()
}
