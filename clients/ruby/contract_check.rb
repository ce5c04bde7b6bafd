#!/usr/bin/env ruby
# A client in another language reads pointsledger's contract (SPEC §10, issue 8).
#
# Uses only Ruby's gRPC and the stubs generated from proto/pointsledger/v1/ledger.proto:
#   grpc_tools_ruby_protoc -I proto --ruby_out=GEN --grpc_out=GEN proto/pointsledger/v1/ledger.proto
#   ruby -I GEN clients/ruby/contract_check.rb 127.0.0.1:50051 TOKEN TIME_S
# (Debian: ruby-grpc ruby-grpc-tools ruby-googleapis-common-protos-types.)
#
# It makes a fixed series of calls and prints one JSON line per call: the outcome, and for
# an error the status code, the google.rpc.BadRequest field violations and the
# google.rpc.ErrorInfo, all decoded from the standard grpc-status-details-bin trailer.
require 'json'
require 'grpc'
require 'google/protobuf/well_known_types'
require 'google/rpc/status_pb'
require 'google/rpc/error_details_pb'
require 'pointsledger/v1/ledger_services_pb'

PB = PointsLedger::V1

address, token, time_s = ARGV
time_s = Integer(time_s)
stub = PB::Ledger::Stub.new(address, :this_channel_is_insecure)
auth = { metadata: { 'authorization' => "Bearer #{token}" }, deadline: Time.now + 20 }

def error_line(name, error)
  line = { call: name, code: error.class.name.split('::').last }
  status = error.to_rpc_status # Google::Rpc::Status from grpc-status-details-bin, or nil
  line[:status_details] = !status.nil?
  status&.details&.each do |any|
    if (bad = any.unpack(Google::Rpc::BadRequest))
      line[:field_violations] = bad.field_violations.map { |v| { field: v.field, description: v.description } }
    elsif (info = any.unpack(Google::Rpc::ErrorInfo))
      line[:reason] = info.reason
      line[:domain] = info.domain
      line[:metadata] = info.metadata.to_h
    end
  end
  line
end

def call(name)
  result = yield
  puts JSON.generate({ call: name, code: 'OK' }.merge(result))
rescue GRPC::BadStatus => e
  puts JSON.generate(error_line(name, e))
end

purchase = PB::RecordPurchaseRequest.new(order_id: 'rb-1', member_id: 'rb-member', amount_minor: 12_345,
                                         category: 'groceries', time_s: time_s)
call('RecordPurchase') do
  r = stub.record_purchase(purchase, **auth)
  { duplicate: r.duplicate, points: r.points, balance: r.balance, member_id: r.member_id, tier: r.tier }
end
call('RecordPurchase again') do
  r = stub.record_purchase(purchase, **auth)
  { duplicate: r.duplicate, points: r.points }
end
call('RecordPurchase zero amount') do
  stub.record_purchase(PB::RecordPurchaseRequest.new(order_id: 'rb-2', member_id: 'rb-member', amount_minor: 0,
                                                     category: 'groceries', time_s: time_s), **auth)
  {}
end
call('RecordPurchase id reused') do
  stub.record_purchase(PB::RecordPurchaseRequest.new(order_id: 'rb-1', member_id: 'rb-member', amount_minor: 999,
                                                     category: 'groceries', time_s: time_s), **auth)
  {}
end
call('Redeem too much') do
  stub.redeem(PB::RedeemRequest.new(redemption_id: 'rb-r1', member_id: 'rb-member', points: 1_000_000,
                                    time_s: time_s + 1), **auth)
  {}
end
call('IngestPurchases') do
  batch = PB::IngestPurchasesRequest.new(order_ids: %w[rb-3 rb-4], member_ids: %w[rb-member rb-other],
                                         amounts_minor: [1_000, -5], categories: %w[groceries groceries],
                                         times_s: [time_s + 2, time_s + 2], batch_id: 'b-1')
  responses = stub.ingest_purchases([batch].each, **auth).to_a
  r = responses.first
  { batch_id: r.batch_id, statuses: r.statuses.map(&:to_s),
    errors: r.errors.map { |e| { index: e.index, field: e.field, code: e.code.to_s, message: e.message } } }
end
call('GetBalance') do
  r = stub.get_balance(PB::GetBalanceRequest.new(member_id: 'rb-member', as_of_s: time_s + 3), **auth)
  { member_id: r.member_id, balance: r.balance, available: r.available }
end
call('GetBalance without token') do
  stub.get_balance(PB::GetBalanceRequest.new(member_id: 'rb-member'), deadline: Time.now + 20)
  {}
end
