//! `GET /api/v1/teams`: the teams the caller is a member of, with their members. Teams are made
//! and changed by administrators (`ci-admin team`); a member submits to one with
//! `ci submit --team NAME`.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use ci_common::db::teams as db_teams;
use serde::{Deserialize, Serialize};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::AppState;

/// One of the caller's teams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TeamView {
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// The members' names, in order.
    pub members: Vec<String>,
}

/// `GET /api/v1/teams`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TeamList {
    pub teams: Vec<TeamView>,
}

/// `GET /api/v1/teams`: the caller's teams by name.
#[utoipa::path(
    get,
    path = "/api/v1/teams",
    operation_id = "list_teams",
    tag = "teams",
    responses(
        (status = 200, description = "The teams the caller is a member of, by name.", body = TeamList),
        (status = 401, response = crate::openapi::Unauthorized),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<TeamList>, ApiError> {
    let mut teams = Vec::new();
    for team in db_teams::of_user(&state.db, user.user_id).await? {
        let members = db_teams::members(&state.db, team.id).await?;
        teams.push(TeamView {
            name: team.name,
            created_at: team.created_at,
            members: members.into_iter().map(|m| m.name).collect(),
        });
    }
    Ok(Json(TeamList { teams }))
}
