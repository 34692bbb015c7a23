//! Riffle's native gRPC API (`riffle.v1.Streams`, see `dataplane/proto/riffle/v1/streams.proto`)
//! over the stream service.
//!
//! Each call translates into calls on [`Catalog`], as the Kinesis API's do; errors keep their
//! Kinesis exception names in the status message ([`status`]).

mod admin;
mod records;
pub mod status;
mod subscribe;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use riffle_proto::v1;
use riffle_proto::v1::streams_server::{Streams, StreamsServer};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::streams::Catalog;

pub use records::{MAX_GET_RECORDS, MAX_PUT_RECORDS};

/// Largest request accepted: a Put of large records.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// The `riffle.v1.Streams` service.
#[derive(Clone)]
pub struct StreamsService {
    catalog: Arc<Catalog>,
}

impl StreamsService {
    /// The service over `catalog`.
    pub fn new(catalog: Arc<Catalog>) -> StreamsService {
        StreamsService { catalog }
    }

    /// The service as a tonic server, accepting requests up to [`MAX_REQUEST_BYTES`].
    pub fn into_server(self) -> StreamsServer<StreamsService> {
        StreamsServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES)
    }
}

/// Serves the gRPC API on `listener` until `shutdown` completes, then lets calls in flight
/// finish (open subscriptions end when their client or the process goes).
pub async fn serve(
    catalog: Arc<Catalog>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    // The builder's TCP settings apply only to listeners it binds itself. Without TCP_NODELAY
    // a response's trailers wait for the client's delayed ACK, about 40 ms per call.
    let incoming = TcpListenerStream::new(listener).map(|accepted| {
        if let Ok(stream) = &accepted {
            let _ = stream.set_nodelay(true);
        }
        accepted
    });
    tonic::transport::Server::builder()
        // Subscriptions can be quiet for long; keepalives find clients that vanished.
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(StreamsService::new(catalog).into_server())
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

#[tonic::async_trait]
impl Streams for StreamsService {
    async fn create_stream(
        &self,
        request: Request<v1::CreateStreamRequest>,
    ) -> Result<Response<v1::CreateStreamResponse>, Status> {
        admin::create_stream(&self.catalog, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_stream(
        &self,
        request: Request<v1::DeleteStreamRequest>,
    ) -> Result<Response<v1::DeleteStreamResponse>, Status> {
        admin::delete_stream(&self.catalog, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_streams(
        &self,
        _request: Request<v1::ListStreamsRequest>,
    ) -> Result<Response<v1::ListStreamsResponse>, Status> {
        Ok(Response::new(admin::list_streams(&self.catalog)))
    }

    async fn describe_stream(
        &self,
        request: Request<v1::DescribeStreamRequest>,
    ) -> Result<Response<v1::DescribeStreamResponse>, Status> {
        admin::describe_stream(&self.catalog, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn update_shard_count(
        &self,
        request: Request<v1::UpdateShardCountRequest>,
    ) -> Result<Response<v1::UpdateShardCountResponse>, Status> {
        admin::update_shard_count(&self.catalog, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn update_retention(
        &self,
        request: Request<v1::UpdateRetentionRequest>,
    ) -> Result<Response<v1::UpdateRetentionResponse>, Status> {
        admin::update_retention(&self.catalog, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn update_stream(
        &self,
        request: Request<v1::UpdateStreamRequest>,
    ) -> Result<Response<v1::UpdateStreamResponse>, Status> {
        admin::update_stream(&self.catalog, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn export_stream(
        &self,
        request: Request<v1::ExportStreamRequest>,
    ) -> Result<Response<v1::ExportStreamResponse>, Status> {
        admin::export_stream(&self.catalog, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn import_stream(
        &self,
        request: Request<v1::ImportStreamRequest>,
    ) -> Result<Response<v1::ImportStreamResponse>, Status> {
        admin::import_stream(&self.catalog, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn shard_metrics(
        &self,
        request: Request<v1::ShardMetricsRequest>,
    ) -> Result<Response<v1::ShardMetricsResponse>, Status> {
        admin::shard_metrics(&self.catalog, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn replay_reshards(
        &self,
        request: Request<v1::ReplayReshardsRequest>,
    ) -> Result<Response<v1::ReplayReshardsResponse>, Status> {
        admin::replay_reshards(&self.catalog, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn put(
        &self,
        request: Request<v1::PutRequest>,
    ) -> Result<Response<v1::PutResponse>, Status> {
        records::put(&self.catalog, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_records(
        &self,
        request: Request<v1::GetRecordsRequest>,
    ) -> Result<Response<v1::GetRecordsResponse>, Status> {
        records::get_records(&self.catalog, request.into_inner())
            .await
            .map(Response::new)
    }

    type SubscribeStream = subscribe::SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        subscribe::subscribe(&self.catalog, request.into_inner())
            .await
            .map(Response::new)
    }
}
