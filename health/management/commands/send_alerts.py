"""Send the emails of alerts not yet sent, without a broker."""

from django.core.management.base import BaseCommand

from health.alerts import alerts_send_pending, digests_send


class Command(BaseCommand):
    help = "Send pending immediate alert emails (and the digests due this hour with --digests)."

    def add_arguments(self, parser):
        parser.add_argument("--digests", action="store_true", help="Also send the digests due at this hour")

    def handle(self, *args, digests=False, **options):
        result = alerts_send_pending()
        self.stdout.write(
            f"Sent {result['sent']} alert email(s); {result['failed']} failed (see the admin: Alert deliveries)."
        )
        if digests:
            self.stdout.write(f"Sent {digests_send()['digests']} digest(s).")
