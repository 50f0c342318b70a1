//! The catalog of routes: every REST route is added through [`Routes`], which records the access
//! it declares next to the handler, so no route can exist without a declaration. Pages and server
//! functions declare theirs in `app::access`; [`AccessTable`] joins all three.

use super::AppState;
use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};
use domain::access::Access;
use std::collections::HashMap;

/// What kind of endpoint a route is, which decides how a refusal looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// An HTML page: anonymous visitors are sent to sign in.
    Page,
    /// A Leptos server function: errors in its own encoding.
    ServerFn,
    /// The REST API, health checks and event streams: JSON errors.
    Api,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: Method,
    pub path: String,
    pub access: Access,
    pub kind: RouteKind,
}

/// A router that cannot get a route without its access declaration.
pub struct Routes {
    pub router: Router<AppState>,
    pub specs: Vec<RouteSpec>,
}

impl Routes {
    pub fn new() -> Self {
        Routes {
            router: Router::new(),
            specs: Vec::new(),
        }
    }

    pub fn get<H, T>(self, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::GET, path, access, handler)
    }

    pub fn post<H, T>(self, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::POST, path, access, handler)
    }

    pub fn put<H, T>(self, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::PUT, path, access, handler)
    }

    /// Adds another catalog's routes (with the layers its router already has).
    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.specs.extend(other.specs);
        self
    }

    fn add<H, T>(mut self, method: Method, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
        self.router = self.router.route(path, on(filter, handler));
        self.specs.push(RouteSpec {
            method,
            path: path.to_string(),
            access,
            kind: RouteKind::Api,
        });
        self
    }
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

/// Every route's access, by matched path and method (looked up by the path as the router
/// matched it, without copying it).
#[derive(Debug, Clone, Default)]
pub struct AccessTable {
    entries: HashMap<String, Vec<RouteSpec>>,
}

#[derive(Debug, thiserror::Error)]
#[error("these routes declare no access in app::access: {0:?}")]
pub struct UndeclaredRoutes(pub Vec<String>);

impl AccessTable {
    /// Joins the REST catalog with the pages and server functions the app registers. Fails when
    /// a registered page or server function has no declaration, so the server refuses to start
    /// rather than serve an unguarded route.
    pub fn build(
        api: &[RouteSpec],
        pages: &[(String, Vec<Method>)],
        server_fns: &[(String, Method)],
    ) -> Result<Self, UndeclaredRoutes> {
        let mut specs = Vec::new();
        let mut missing = Vec::new();
        specs.extend(api.iter().cloned());
        let page_access: HashMap<&str, Access> = app::access::pages().into_iter().collect();
        for (path, methods) in pages {
            match page_access.get(path.as_str()) {
                Some(access) => {
                    for method in methods {
                        specs.push(RouteSpec {
                            method: method.clone(),
                            path: path.clone(),
                            access: *access,
                            kind: RouteKind::Page,
                        });
                    }
                }
                None => missing.push(format!("page {path}")),
            }
        }
        let fn_access: HashMap<&str, Access> = app::access::server_fns().into_iter().collect();
        for (path, method) in server_fns {
            match fn_access.get(path.as_str()) {
                Some(access) => {
                    specs.push(RouteSpec {
                        method: method.clone(),
                        path: path.clone(),
                        access: *access,
                        kind: RouteKind::ServerFn,
                    });
                }
                None => missing.push(format!("server function {path}")),
            }
        }
        if missing.is_empty() {
            let mut entries: HashMap<String, Vec<RouteSpec>> = HashMap::new();
            for spec in specs {
                let same_path = entries.entry(spec.path.clone()).or_default();
                // A later declaration of the same method and path replaces the earlier one.
                same_path.retain(|other| other.method != spec.method);
                same_path.push(spec);
            }
            Ok(AccessTable { entries })
        } else {
            Err(UndeclaredRoutes(missing))
        }
    }

    pub fn get(&self, method: &Method, path: &str) -> Option<&RouteSpec> {
        // HEAD is answered by GET routes.
        let method = if *method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.entries
            .get(path)?
            .iter()
            .find(|spec| spec.method == *method)
    }

    /// Every route, for the authorization test.
    pub fn specs(&self) -> impl Iterator<Item = &RouteSpec> {
        self.entries.values().flatten()
    }
}
