"""GitHub: create an issue, comment on one; an app installation token is revoked when its
connection is deleted (DELETE /installation/token)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from infra.connectors.base import ActionSpec, Connector, Strict, json_object
from infra.errors import PermanentError

# GitHub App installation tokens start so; only they can revoke themselves. A personal
# access token is revoked by its owner on github.com, not through the API.
INSTALLATION_TOKEN_PREFIX = "ghs_"


class GitHubCredentials(Strict):
    token: str = Field(min_length=1)


class CreateIssue(Strict):
    owner: str = Field(min_length=1)
    repo: str = Field(min_length=1)
    title: str = Field(min_length=1, max_length=256)
    body: str | None = None
    labels: list[str] = Field(default_factory=list)


class CreateComment(Strict):
    owner: str = Field(min_length=1)
    repo: str = Field(min_length=1)
    issue_number: int = Field(ge=1)
    body: str = Field(min_length=1, max_length=65_536)


class GitHub(Connector):
    name = "github"
    title = "GitHub"
    auth = "token"
    revocation = "an app installation token (DELETE /installation/token)"
    description = "Open issues and comment on them."
    credentials = GitHubCredentials
    actions = {
        "create_issue": ActionSpec(
            "create_issue", "POST /repos/{owner}/{repo}/issues", CreateIssue
        ),
        "create_comment": ActionSpec(
            "create_comment", "POST /repos/{owner}/{repo}/issues/{n}/comments", CreateComment
        ),
    }

    async def run(
        self, action: str, credentials: Any, params: Any, idempotency_key: str
    ) -> dict[str, Any]:
        repo = f"{self.base_url}/repos/{params.owner}/{params.repo}"
        if action == "create_issue":
            url = f"{repo}/issues"
            body = params.model_dump(include={"title", "body", "labels"}, exclude_none=True)
        else:
            url = f"{repo}/issues/{params.issue_number}/comments"
            body = {"body": params.body}
        response = await self.http.call(
            "github",
            "POST",
            url,
            headers={
                "Authorization": f"Bearer {credentials.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
            json=body,
        )
        answer = json_object("github", response)
        return {
            "id": answer.get("id"),
            "number": answer.get("number"),
            "url": answer.get("html_url"),
        }

    async def revoke(self, credentials: Any) -> bool:
        """DELETE /installation/token for an app installation token; any other token: no."""
        if not credentials.token.startswith(INSTALLATION_TOKEN_PREFIX):
            return False
        try:
            await self.http.call(
                "github",
                "DELETE",
                f"{self.base_url}/installation/token",
                headers={
                    "Authorization": f"Bearer {credentials.token}",
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": "2022-11-28",
                },
            )
        except PermanentError as exc:
            if exc.status == 401:  # already expired or revoked
                return True
            raise
        return True
