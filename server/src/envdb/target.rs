//! Where an environment's database is. `database.name` in the definition names a database on
//! Flightdeck's own PostgreSQL server: its URL is Flightdeck's own (the embedded cluster's or
//! DATABASE_URL) with the name swapped, so it shares the server, credentials and options.
//! `database.url_env` names a server environment variable holding the URL of a database
//! elsewhere. URLs may hold passwords: they never appear in `Debug`, in messages or on a
//! command line (programs get the password in `PGPASSWORD`).

use domain::definition::DatabaseTarget;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::fmt;
use std::str::FromStr;

/// Databases Flightdeck never migrates into or replaces.
const RESERVED: [&str; 3] = ["postgres", "template0", "template1"];

/// The query parameters libpq understands, which programs (pg_dump, pg_restore) are given;
/// others (sqlx's own, such as `statement-cache-capacity`) are left out for them.
const LIBPQ_PARAMETERS: [&str; 11] = [
    "host",
    "hostaddr",
    "port",
    "user",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "options",
    "application_name",
    "connect_timeout",
];

/// A PostgreSQL URL, kept out of `Debug` and `Display` because it may hold a password.
#[derive(Clone)]
pub struct DatabaseUrl(url::Url);

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl(database {:?}, …)", self.database())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{what} is not a PostgreSQL URL (postgres://…)")]
    BadUrl { what: String },
    #[error(
        "the server has no environment variable `{0}`, which the definition names as the database URL"
    )]
    MissingVariable(String),
    #[error(
        "`{0}` cannot be an environment's database: use lower-case letters, digits and underscores, at most 63, starting with a letter or _"
    )]
    BadName(String),
    #[error("`{0}` cannot be an environment's database: it is {1}")]
    Reserved(String, &'static str),
    #[error("cannot reach the database server for `{database}`: {source}")]
    Connect {
        database: String,
        source: sqlx::Error,
    },
    #[error("cannot create database `{database}`: {source}")]
    Create {
        database: String,
        source: sqlx::Error,
    },
}

impl DatabaseUrl {
    /// Parses a URL; `what` names it in the error ("DATABASE_URL"), never its text.
    pub fn parse(text: &str, what: &str) -> Result<DatabaseUrl, TargetError> {
        let bad = || TargetError::BadUrl {
            what: what.to_string(),
        };
        let url = url::Url::parse(text).map_err(|_| bad())?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(bad());
        }
        PgConnectOptions::from_str(text).map_err(|_| bad())?;
        Ok(DatabaseUrl(url))
    }

    /// The database it names (the path, or a `dbname` parameter).
    /// The URL itself, credentials included: for the processes that need it (the app's own
    /// deploy job), never for logs.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    pub fn database(&self) -> Option<String> {
        self.0
            .query_pairs()
            .find(|(k, _)| k == "dbname")
            .map(|(_, v)| v.into_owned())
            .or_else(|| {
                let path = self.0.path().trim_start_matches('/');
                (!path.is_empty()).then(|| percent_decode(path))
            })
    }

    /// The same server, credentials and options, another database.
    pub fn with_database(&self, name: &str) -> DatabaseUrl {
        let mut url = self.0.clone();
        url.set_path(&format!("/{name}"));
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "dbname")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        set_query(&mut url, &pairs);
        DatabaseUrl(url)
    }

    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(self.0.as_str())
            .expect("checked when parsed")
            .application_name("flightdeck-envdb")
            .log_statements(tracing::log::LevelFilter::Debug)
    }

    pub async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.connect_options()).await
    }

    /// What a libpq program is given: a connection URI without the password (it would show in
    /// `ps`) and without parameters libpq does not know, and the password for `PGPASSWORD`.
    pub fn for_libpq(&self) -> (String, Option<String>) {
        let mut url = self.0.clone();
        let password = url.password().map(percent_decode);
        let _ = url.set_password(None);
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| LIBPQ_PARAMETERS.contains(&k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        set_query(&mut url, &pairs);
        (url.to_string(), password)
    }
}

fn set_query(url: &mut url::Url, pairs: &[(String, String)]) {
    if pairs.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Where the database is, relative to Flightdeck's own server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On Flightdeck's server, created when missing.
    Own,
    /// Elsewhere, from an environment variable; it must exist.
    External,
}

/// An environment's database, resolved.
#[derive(Debug, Clone)]
pub struct EnvDatabase {
    /// Its name on its server.
    pub name: String,
    pub url: DatabaseUrl,
    pub placement: Placement,
}

impl EnvDatabase {
    /// The URL of the server's maintenance database, for creating and replacing this one.
    pub fn maintenance_url(&self, admin: &DatabaseUrl) -> DatabaseUrl {
        match self.placement {
            Placement::Own => admin.clone(),
            Placement::External => self.url.with_database("postgres"),
        }
    }
}

/// Checks a database name for Flightdeck's server: a plain identifier (so it needs no quoting
/// rules beyond double quotes), not a system database, not Flightdeck's own.
pub fn check_name(name: &str, own: Option<&str>) -> Result<(), TargetError> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        return Err(TargetError::BadName(name.to_string()));
    }
    if RESERVED.contains(&name) {
        return Err(TargetError::Reserved(name.to_string(), "a system database"));
    }
    if own == Some(name) {
        return Err(TargetError::Reserved(
            name.to_string(),
            "Flightdeck's own database",
        ));
    }
    Ok(())
}

/// The environment database `target` names; `variable` reads the server's environment.
pub fn resolve(
    admin: &DatabaseUrl,
    target: &DatabaseTarget,
    variable: impl Fn(&str) -> Option<String>,
) -> Result<EnvDatabase, TargetError> {
    match target {
        DatabaseTarget::Name(name) => {
            check_name(name, admin.database().as_deref())?;
            Ok(EnvDatabase {
                name: name.clone(),
                url: admin.with_database(name),
                placement: Placement::Own,
            })
        }
        DatabaseTarget::UrlEnv(var) => {
            let text = variable(var).ok_or_else(|| TargetError::MissingVariable(var.clone()))?;
            let url = DatabaseUrl::parse(&text, &format!("the value of `{var}`"))?;
            let name = url.database().ok_or_else(|| TargetError::BadUrl {
                what: format!("the value of `{var}` (it names no database)"),
            })?;
            Ok(EnvDatabase {
                name,
                url,
                placement: Placement::External,
            })
        }
    }
}

/// Creates the database when it is on Flightdeck's server and missing (two replicas may race:
/// the loser finds it made); a database elsewhere must exist and answer.
pub async fn ensure_exists(admin: &DatabaseUrl, db: &EnvDatabase) -> Result<(), TargetError> {
    let connect_error = |source| TargetError::Connect {
        database: db.name.clone(),
        source,
    };
    if db.placement == Placement::External {
        let conn = db.url.connect().await.map_err(connect_error)?;
        let _ = conn.close().await;
        return Ok(());
    }
    let mut conn = admin.connect().await.map_err(connect_error)?;
    let exists: bool =
        sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
            .bind(&db.name)
            .fetch_one(&mut conn)
            .await
            .map_err(connect_error)?;
    if !exists {
        // The name was checked to be a plain identifier: quoting it is enough.
        let created = super::run(&mut conn, &format!("create database \"{}\"", db.name)).await;
        match created {
            Ok(_) => tracing::info!(database = %db.name, "created an environment database"),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(source) => {
                return Err(TargetError::Create {
                    database: db.name.clone(),
                    source,
                });
            }
        }
    }
    let _ = conn.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> DatabaseUrl {
        DatabaseUrl::parse(
            "postgres://flightdeck:s%40cret@127.0.0.1:5433/flightdeck?sslmode=disable&statement-cache-capacity=10",
            "test",
        )
        .unwrap()
    }

    #[test]
    fn a_named_database_shares_the_server_and_credentials() {
        let db = resolve(
            &admin(),
            &DatabaseTarget::Name("studybuddy_staging".into()),
            |_| None,
        )
        .unwrap();
        assert_eq!(db.name, "studybuddy_staging");
        assert_eq!(db.url.database().as_deref(), Some("studybuddy_staging"));
        let (uri, password) = db.url.for_libpq();
        assert_eq!(
            uri,
            "postgres://flightdeck@127.0.0.1:5433/studybuddy_staging?sslmode=disable"
        );
        assert_eq!(password.as_deref(), Some("s@cret"));
        assert!(!format!("{db:?}").contains("cret"));
    }

    #[test]
    fn a_socket_url_keeps_its_host_parameter() {
        let admin =
            DatabaseUrl::parse("postgres:///flightdeck?host=/run/pg&user=flightdeck", "t").unwrap();
        let db = resolve(&admin, &DatabaseTarget::Name("app_dev".into()), |_| None).unwrap();
        assert_eq!(
            db.url.for_libpq().0,
            "postgres:///app_dev?host=%2Frun%2Fpg&user=flightdeck"
        );
        assert_eq!(db.url.database().as_deref(), Some("app_dev"));
    }

    #[test]
    fn names_flightdeck_must_not_touch_are_refused() {
        for (name, expected) in [
            ("flightdeck", "Flightdeck's own database"),
            ("postgres", "a system database"),
            ("Drop\"", "use lower-case letters"),
            ("", "use lower-case letters"),
        ] {
            let error = resolve(&admin(), &DatabaseTarget::Name(name.into()), |_| None)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{name}: {error}");
        }
    }

    #[test]
    fn a_url_from_the_environment_is_read_and_never_shown() {
        let target = DatabaseTarget::UrlEnv("PROD_DB".into());
        let missing = resolve(&admin(), &target, |_| None).unwrap_err();
        assert!(missing.to_string().contains("`PROD_DB`"));
        let bad = resolve(&admin(), &target, |_| Some("mysql://u:pw@h/db".into())).unwrap_err();
        assert!(!bad.to_string().contains("pw"), "{bad}");
        let db = resolve(&admin(), &target, |_| {
            Some("postgres://u:pw@db.internal/app".into())
        })
        .unwrap();
        assert_eq!(
            (db.name.as_str(), db.placement),
            ("app", Placement::External)
        );
        assert_eq!(
            db.maintenance_url(&admin()).database().as_deref(),
            Some("postgres")
        );
    }
}
