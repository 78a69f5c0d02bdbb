"""Analytics routes: figures of an org's tasks per period in its time zone
(docs/analytics.md). The analytics service validates the query, authorizes
(``task.stats``: whoever may read the task stats) and decides tenancy before it
answers, from its own read model, cached until an event of the org changes it."""
from __future__ import annotations

from analytics_svc.schemas import (
    RangeArgsSchema,
    SummarySchema,
    ThroughputArgsSchema,
    ThroughputSchema,
    TimesSchema,
    WorkloadSchema,
)
from gateway_svc.http import api

ANALYTICS = "/orgs/<org_id>/analytics"


class AnalyticsRoutes:
    @api("GET", f"{ANALYTICS}/summary", query=RangeArgsSchema, response=SummarySchema,
         errors=(403, 404))
    def analytics_summary(self, request, org_id):
        """Tasks created, completed and overdue per day, week or month."""
        return self.rpc_analytics.summary(request.user_id, org_id, request.args.to_dict())

    @api("GET", f"{ANALYTICS}/times", query=RangeArgsSchema, response=TimesSchema,
         errors=(403, 404))
    def analytics_times(self, request, org_id):
        """Lead time (created → done) and cycle time (first in progress → done)
        percentiles of the tasks completed, overall and per period, in seconds."""
        return self.rpc_analytics.times(request.user_id, org_id, request.args.to_dict())

    @api("GET", f"{ANALYTICS}/throughput", query=ThroughputArgsSchema, response=ThroughputSchema,
         errors=(403, 404))
    def analytics_throughput(self, request, org_id):
        """Tasks completed per team or per assignee, with their count per period."""
        return self.rpc_analytics.throughput(request.user_id, org_id, request.args.to_dict())

    @api("GET", f"{ANALYTICS}/workload", response=WorkloadSchema, errors=(403, 404))
    def analytics_workload(self, request, org_id):
        """Open tasks per employee now: to do, in progress, and overdue among them."""
        return self.rpc_analytics.workload(request.user_id, org_id, {})
