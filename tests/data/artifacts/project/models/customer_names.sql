-- With broken=true this model has a SQL error (a column that does not exist).
select customer_id, {{ 'no_such_column' if var('broken', false) else 'name' }} as customer_name
from {{ ref('stg_customers') }}
