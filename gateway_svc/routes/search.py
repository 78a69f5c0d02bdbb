"""Search routes (members of the org): ranked full-text search over tasks,
employees and teams, and as-you-type suggestions. The search service
authorizes (404 outside the org, only the kinds the role may read) and
validates the query."""
from __future__ import annotations

from gateway_svc.http import api
from search_svc.schemas import SearchArgsSchema, SearchPageSchema, SuggestArgsSchema, SuggestionsSchema

SEARCH = "/orgs/<org_id>/search"


class SearchRoutes:
    @api("GET", SEARCH, query=SearchArgsSchema, response=SearchPageSchema, errors=(403, 404))
    def search(self, request, org_id):
        """Search the org's tasks, employees and teams, best first; typos forgiven.

        Tasks by title, description and comments, employees by name, email and job
        title, teams by name and description; the last word also matches as a prefix."""
        return self.rpc_search.search(request.user_id, org_id, request.args.to_dict())

    @api("GET", f"{SEARCH}/suggest", query=SuggestArgsSchema, response=SuggestionsSchema,
         errors=(403, 404))
    def search_suggest(self, request, org_id):
        """Titles and names that begin with what has been typed, for a search box."""
        return self.rpc_search.suggest(request.user_id, org_id, request.args.to_dict())
