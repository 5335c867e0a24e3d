select customer_id, length(customer_name) as name_length from {{ ref('customer_names') }}
