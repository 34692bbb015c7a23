//! Wire formats of the AWS protocols Riffle speaks.
