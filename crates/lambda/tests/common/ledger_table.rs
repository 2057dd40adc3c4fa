//! A ledger table with the layout of `dlq_healer_aws::ledger_schema`, as the SAM template makes it.

use super::emulator::unique;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use dlq_healer_aws::ledger_schema::{
    CLASS_ATTRIBUTE, CLASS_TIME_INDEX, PARTITION_KEY, SORT_KEY, TIME_ATTRIBUTE,
};

/// Create a fresh ledger table; returns its name.
pub async fn create(client: &aws_sdk_dynamodb::Client) -> String {
    let name = unique("ledger");
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .unwrap()
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .unwrap()
    };
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(PARTITION_KEY, ScalarAttributeType::S))
        .attribute_definitions(attribute(SORT_KEY, ScalarAttributeType::N))
        .attribute_definitions(attribute(CLASS_ATTRIBUTE, ScalarAttributeType::S))
        .attribute_definitions(attribute(TIME_ATTRIBUTE, ScalarAttributeType::S))
        .key_schema(key(PARTITION_KEY, KeyType::Hash))
        .key_schema(key(SORT_KEY, KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(CLASS_TIME_INDEX)
                .key_schema(key(CLASS_ATTRIBUTE, KeyType::Hash))
                .key_schema(key(TIME_ATTRIBUTE, KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    name
}
