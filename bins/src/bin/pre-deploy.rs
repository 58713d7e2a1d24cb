//! The `pre-deploy` command line: parse arguments, set up logging and the runtime, call the
//! library, render the result, and exit with the documented code.

use std::process::ExitCode;

fn main() -> ExitCode {
    bins::main()
}
