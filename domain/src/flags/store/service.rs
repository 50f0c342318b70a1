//! The flag store's methods: each read from the pool, each change one transaction around the
//! function of [`super::flag`], [`super::edit`] or [`super::segment`] that does it.

use sqlx::PgPool;

use super::rows::find_environment;
use super::state::build_state;
use super::{
    Applied, Environment, EnvironmentId, FlagError, FlagStore, FlagSummary, NewSegment, SegmentId,
    SegmentInfo, edit, find_flag, flag, read, segment,
};
use crate::audit::{Actor, Origin};
use crate::flags::definition::{
    EnvironmentEdit, FlagDetails, FlagName, NewFlag, Strategies, Variants,
};
use crate::flags::model::{ClientFeatures, Dependency};

impl FlagStore {
    pub fn new(pool: PgPool) -> Self {
        FlagStore { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Finds a project's environment by the names people and API tokens use.
    pub async fn environment(
        &self,
        project: &str,
        environment: &str,
    ) -> Result<Environment, FlagError> {
        let row = sqlx::query!(
            r#"select e.environment_id, e.project_id, e.name, p.project_key
               from environment e join project p on p.project_id = e.project_id
               where p.project_key = $1 and e.name = $2"#,
            project,
            environment
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            let mut conn = self.pool.acquire().await?;
            return Err(super::unknown_environment(&mut conn, project, environment).await);
        };
        Ok(Environment {
            id: EnvironmentId(row.environment_id),
            project_id: row.project_id,
            project_key: row.project_key,
            name: row.name,
        })
    }

    /// Checks that the environment has the flag (and that it is not archived).
    pub async fn environment_flag_exists(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
    ) -> Result<(), FlagError> {
        let mut conn = self.pool.acquire().await?;
        let env = find_environment(&mut conn, environment)
            .await?
            .ok_or(FlagError::UnknownEnvironment(environment))?;
        find_flag(&mut conn, &env.project_key, env.project_id, flag).await?;
        Ok(())
    }

    /// Creates a flag, off and without strategies in every environment.
    pub async fn create(
        &self,
        project: &str,
        new: NewFlag,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let mut tx = self.pool.begin().await?;
        let applied = flag::create(&mut tx, project, new, actor, origin).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Changes what a flag is the same in every environment: type, description, owner, stale.
    pub async fn update(
        &self,
        project: &str,
        name: &FlagName,
        details: FlagDetails,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let mut tx = self.pool.begin().await?;
        let applied = flag::update(&mut tx, project, name, details, actor, origin).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Sets the flags this flag needs (Unleash's feature dependencies), replacing the old list.
    pub async fn set_dependencies(
        &self,
        project: &str,
        name: &FlagName,
        dependencies: Vec<Dependency>,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let mut tx = self.pool.begin().await?;
        let applied =
            flag::set_dependencies(&mut tx, project, name, dependencies, actor, origin).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Archives a flag: SDKs no longer see it anywhere. Refused while other live flags need it.
    pub async fn archive(
        &self,
        project: &str,
        name: &FlagName,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let mut tx = self.pool.begin().await?;
        let applied = flag::archive(&mut tx, project, name, actor, origin).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Brings an archived flag back, off in every environment; see [`flag::revive`].
    pub async fn revive(
        &self,
        project: &str,
        name: &FlagName,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let mut tx = self.pool.begin().await?;
        let applied = flag::revive(&mut tx, project, name, actor, origin).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Turns a flag on or off in one environment.
    pub async fn toggle(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
        enabled: bool,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let edit = EnvironmentEdit::Enable { enabled };
        self.apply(environment, flag, edit, actor, origin).await
    }

    /// The kill switch: turns a flag off in one environment, audited as `flag.killed`.
    pub async fn kill(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        self.apply(environment, flag, EnvironmentEdit::Kill, actor, origin)
            .await
    }

    /// Replaces a flag's strategies in one environment. Every segment they name must be one of
    /// the project's.
    pub async fn set_strategies(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
        strategies: Strategies,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let edit = EnvironmentEdit::Strategies { strategies };
        self.apply(environment, flag, edit, actor, origin).await
    }

    /// Replaces a flag's own variants in one environment.
    pub async fn set_variants(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
        variants: Variants,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let edit = EnvironmentEdit::Variants { variants };
        self.apply(environment, flag, edit, actor, origin).await
    }

    /// Turns a flag's impression events on or off in one environment.
    pub async fn set_impression_data(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
        enabled: bool,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let edit = EnvironmentEdit::ImpressionData { enabled };
        self.apply(environment, flag, edit, actor, origin).await
    }

    /// Applies one edit to a flag in one environment ([`edit::apply`] in a transaction of its own).
    pub async fn apply(
        &self,
        environment: EnvironmentId,
        flag: &FlagName,
        change: EnvironmentEdit,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let mut tx = self.pool.begin().await?;
        let applied = edit::apply(&mut tx, environment, flag, change, actor, origin).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Creates a segment. No strategy uses it yet, so no environment changes.
    pub async fn create_segment(
        &self,
        project: &str,
        new: NewSegment,
        actor: Actor,
        origin: &Origin,
    ) -> Result<SegmentId, FlagError> {
        let mut tx = self.pool.begin().await?;
        let id = segment::create(&mut tx, project, new, actor, origin).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Changes a segment; every environment whose flags use it gets a new snapshot.
    pub async fn update_segment(
        &self,
        project: &str,
        id: SegmentId,
        new: NewSegment,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let mut tx = self.pool.begin().await?;
        let applied = segment::update(&mut tx, project, id, new, actor, origin).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Deletes a segment no strategy uses; see [`segment::delete`].
    pub async fn delete_segment(
        &self,
        project: &str,
        id: SegmentId,
        actor: Actor,
        origin: &Origin,
    ) -> Result<Applied, FlagError> {
        let mut tx = self.pool.begin().await?;
        let applied = segment::delete(&mut tx, project, id, actor, origin).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// The project's segments, by name.
    pub async fn segments(&self, project: &str) -> Result<Vec<SegmentInfo>, FlagError> {
        let mut conn = self.pool.acquire().await?;
        read::segments(&mut conn, project).await
    }

    /// An environment's flags, by name, with their state there.
    pub async fn flags(&self, environment: EnvironmentId) -> Result<Vec<FlagSummary>, FlagError> {
        let mut conn = self.pool.acquire().await?;
        read::flags(&mut conn, environment).await
    }

    /// The environment's `/api/client/features` body, built from the rows as they are now. The
    /// API serves the newest snapshot instead (`current`), which equals this after every change.
    pub async fn client_features(
        &self,
        environment: EnvironmentId,
    ) -> Result<ClientFeatures, FlagError> {
        let mut conn = self.pool.acquire().await?;
        let env = find_environment(&mut conn, environment)
            .await?
            .ok_or(FlagError::UnknownEnvironment(environment))?;
        Ok(build_state(&mut conn, &env).await?)
    }
}
