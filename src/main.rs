use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    upconfirm::service::telemetry::init();
    let cli = upconfirm::cli::Cli::parse();
    match upconfirm::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
