use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ci_client::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(ci_client::main(cli))
}
