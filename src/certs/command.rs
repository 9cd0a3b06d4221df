//! The `certs` command.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// `certs`: flags.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write ca.crt, ca.key, tls.crt and tls.key into.
    #[arg(long, env = "IRSA_CERTS_OUT", default_value = "certs")]
    out: PathBuf,
    /// DNS name of the serving certificate; repeatable.
    #[arg(long, env = "IRSA_CERTS_DNS", value_delimiter = ',')]
    dns: Vec<String>,
    /// IP address of the serving certificate; repeatable.
    #[arg(long, env = "IRSA_CERTS_IP", value_delimiter = ',')]
    ip: Vec<IpAddr>,
    /// Validity of the serving certificate in days (the CA lives twice as long).
    #[arg(long, env = "IRSA_CERTS_DAYS", default_value_t = 365)]
    days: u32,
    /// Overwrite existing files.
    #[arg(long, env = "IRSA_CERTS_FORCE")]
    force: bool,
}

/// Generates the bundle and prints the paths written.
pub fn run(args: CertsArgs) -> Result<()> {
    let bundle = super::generate(&args.dns, &args.ip, args.days)?;
    for path in bundle.write(&args.out, args.force)? {
        println!("{}", path.display());
    }
    Ok(())
}
