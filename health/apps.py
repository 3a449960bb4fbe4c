"""App configuration of health scoring."""

from django.apps import AppConfig


def queue_rescore(sender, partner_ids, **kwargs) -> None:
    # Only queues: the beat sweep (health.tasks.recompute_pending) does the work, debounced.
    from health.services import recompute_request

    recompute_request(partner_ids=partner_ids)


class HealthConfig(AppConfig):
    name = "health"
    verbose_name = "Partner health"

    def ready(self) -> None:
        from prm.services import partner_data_changed

        partner_data_changed.connect(queue_rescore, dispatch_uid="health.queue_rescore")
