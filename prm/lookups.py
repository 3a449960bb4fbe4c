"""`field__any=[...]`: membership in a long list of values, sent as one array parameter on PostgreSQL.

`field__in=[...]` sends one parameter per value: for the 30,000 partner ids of a recompute's alert step,
building, sending and parsing that statement took longer than answering it. `= ANY(%s)` sends the list
as one array. Other databases get the ordinary IN.
"""

from django.core.exceptions import EmptyResultSet
from django.db.models import Field, ForeignObject
from django.db.models.lookups import In, Lookup


class AnyOf(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def get_prep_lookup(self):
        return [self.lhs.output_field.get_prep_value(value) for value in self.rhs]

    def as_sql(self, compiler, connection):
        return In(self.lhs, self.rhs).as_sql(compiler, connection)

    def as_postgresql(self, compiler, connection):
        if not self.rhs:
            raise EmptyResultSet  # as IN does: nothing matches, and no query is sent
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = [self.lhs.output_field.get_db_prep_value(value, connection, prepared=True) for value in self.rhs]
        return f"{lhs} = ANY(%s)", [*lhs_params, values]


Field.register_lookup(AnyOf)
ForeignObject.register_lookup(AnyOf)  # relations look their lookups up on their own classes only
