(function(){
const tasks=JSON.parse(document.getElementById('task-data').textContent);
const extra=JSON.parse(document.getElementById('sample-data').textContent);
const transcripts=extra.transcripts, exchanges=extra.exchanges;
const samplesOf={};
for(const s of extra.samples){(samplesOf[s[0]]=samplesOf[s[0]]||[]).push(s);}
const body=document.querySelector('#task-table tbody');
const outcome=document.getElementById('outcome-filter'), search=document.getElementById('search');
const shown=document.getElementById('shown');
let sortKey='index', asc=true;
const esc=s=>String(s==null?'':s).replace(/[&<>"']/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const opens=t=>t.details||samplesOf[t.index]||exchanges[t.index];
function render(){
  const want=outcome.value, q=search.value.toLowerCase();
  let rows=tasks.filter(t=>(want==='all'||t.outcome===want)&&(!q||t.task_id.toLowerCase().includes(q)||t.bench.toLowerCase().includes(q)));
  rows.sort((a,b)=>{const x=a[sortKey],y=b[sortKey];const c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y));return asc?c:-c;});
  body.innerHTML=rows.map(t=>'<tr class="task'+(opens(t)?' has-details':'')+'" data-index="'+esc(t.index)+'" data-outcome="'+esc(t.outcome)+'">'
    +'<td>'+esc(t.bench)+'</td><td>'+esc(t.task_id)+'</td><td class="'+esc(t.outcome)+'">'+esc(t.outcome)+'</td>'
    +'<td class="num">'+esc(Number(t.duration).toFixed(2))+'</td><td>'+esc(t.metrics)+'</td><td>'+esc(t.reason)+'</td></tr>').join('');
  shown.textContent='showing '+rows.length+' of '+tasks.length+' tasks';
  document.querySelectorAll('#task-table th').forEach(th=>{th.classList.toggle('sorted',th.dataset.key===sortKey);th.classList.toggle('asc',asc);});
}
function toolCallHtml(c){
  const head=esc(c.name)+' '+esc(c.arguments)+(c.error!=null?' — error':' — exit '+esc(c.exit_code)+(c.timed_out?' (timed out)':'')+(c.duration!=null?', '+esc(Number(c.duration).toFixed(2))+' s':''));
  return '<li class="tool-call"><code>'+head+'</code><pre class="tool-output">'+esc(c.output)+'</pre></li>';
}
function exchangeHtml(x){
  if(!x) return '<p class="note">no transcript embedded for this sample (see the task\'s transcript.jsonl)</p>';
  if(x.verifier) return '<dl class="exchange verifier"><dt>verifier</dt><dd class="request">'+esc(x.request)+'</dd>'
    +'<dt>exit code '+esc(x.exit_code)+'</dt><dd class="response">'+esc(x.response)+'</dd></dl>';
  let h='<dl class="exchange'+(x.step!=null?' step':'')+'">';
  if(x.step!=null) h+='<dt>step</dt><dd class="step-index">'+esc(x.step)+(x.cached?' (from the cache)':'')+'</dd>';
  for(const [k,label] of [['request',x.step!=null?'new messages':'prompt (request)'],['response','answer'],['parsed','parsed result'],['error','error']]){
    if(x[k]!=null&&x[k]!==''&&x[k]!=='null') h+='<dt>'+label+'</dt><dd class="'+k+'">'+esc(x[k])+'</dd>';
  }
  if(x.tool_calls&&x.tool_calls.length) h+='<dt>tool calls</dt><dd><ol class="tool-calls">'+x.tool_calls.map(toolCallHtml).join('')+'</ol></dd>';
  h+='<dt>latency</dt><dd>'+esc(x.latency==null?'':Number(x.latency).toFixed(3)+' s')+(x.attempts>1?' ('+esc(x.attempts)+' attempts)':'')+'</dd>';
  return h+'</dl>';
}
function trajectoryHtml(indices){
  if(!indices.length) return exchangeHtml(null);
  return indices.map(i=>exchangeHtml(transcripts[i])).join('');
}
function samplesHtml(t, filter){
  const all=samplesOf[t.index]||[];
  const rows=all.filter(s=>filter==='all'||(filter==='correct'?s[2]>=1:s[2]<1));
  let h='<div class="samples" data-task="'+esc(t.index)+'"><label>samples <select class="sample-filter">'
    +['all','correct','wrong'].map(v=>'<option'+(v===filter?' selected':'')+'>'+v+'</option>').join('')
    +'</select></label> <span class="sample-count">'+rows.length+' of '+all.length+' samples</span>'
    +'<table class="sample-table"><thead><tr><th>sample</th><th class="num">score</th><th>metadata</th></tr></thead><tbody>';
  for(const s of rows){
    h+='<tr class="sample '+(s[2]>=1?'correct':'wrong')+'" data-sample="'+esc(s[1])+'" data-transcript="'+esc(s[4].join(','))+'">'
      +'<td>'+esc(s[1])+'</td><td class="num">'+esc(s[2])+'</td><td>'+esc(s[3])+'</td></tr>';
  }
  return h+'</tbody></table></div>';
}
function detailsHtml(t){
  let h='';
  if(t.details) h+='<pre class="failure">'+esc(t.details)+'</pre>';
  if(samplesOf[t.index]) h+=samplesHtml(t,'all');
  for(const i of (exchanges[t.index]||[])) h+='<div class="loose-exchange">'+exchangeHtml(transcripts[i])+'</div>';
  return h;
}
body.addEventListener('change',e=>{
  const sel=e.target.closest('select.sample-filter'); if(!sel) return;
  const box=sel.closest('div.samples'); const t=tasks[+box.dataset.task];
  box.outerHTML=samplesHtml(t, sel.value);
});
body.addEventListener('click',e=>{
  if(e.target.closest('select')) return;
  const sample=e.target.closest('tr.sample');
  if(sample){
    const next=sample.nextElementSibling;
    if(next&&next.classList.contains('transcript')){next.remove();return;}
    const indices=sample.dataset.transcript?sample.dataset.transcript.split(',').map(Number):[];
    const d=document.createElement('tr'); d.className='transcript';
    d.innerHTML='<td colspan="3">'+trajectoryHtml(indices)+'</td>'; sample.after(d); return;
  }
  const tr=e.target.closest('tr.task.has-details'); if(!tr) return;
  const next=tr.nextElementSibling;
  if(next&&next.classList.contains('details')){next.remove();return;}
  const t=tasks[+tr.dataset.index]; const d=document.createElement('tr'); d.className='details';
  d.innerHTML='<td colspan="6">'+detailsHtml(t)+'</td>'; tr.after(d);
});
document.querySelectorAll('#task-table th').forEach(th=>th.addEventListener('click',()=>{
  if(sortKey===th.dataset.key){asc=!asc;}else{sortKey=th.dataset.key;asc=th.dataset.key!=='duration';} render();}));
outcome.addEventListener('change',render); search.addEventListener('input',render);
const params=new URLSearchParams(location.hash.slice(1));
if(params.get('outcome')) outcome.value=params.get('outcome');
if(params.get('q')) search.value=params.get('q');
if(params.get('sort')){sortKey=params.get('sort');asc=params.get('order')!=='desc';}
render();
if(params.get('open')){const tr=body.querySelector('tr.task.has-details'); if(tr) tr.click();}
if(params.get('samples')){const sel=body.querySelector('select.sample-filter'); if(sel){sel.value=params.get('samples'); sel.dispatchEvent(new Event('change',{bubbles:true}));}}
if(params.get('sample')){const s=body.querySelector('tr.sample'); if(s) s.click();}
})();
