(function(){
const tasks=JSON.parse(document.getElementById('task-data').textContent);
const body=document.querySelector('#task-table tbody');
const outcome=document.getElementById('outcome-filter'), search=document.getElementById('search');
const shown=document.getElementById('shown');
let sortKey='index', asc=true;
const esc=s=>String(s==null?'':s).replace(/[&<>"']/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
function render(){
  const want=outcome.value, q=search.value.toLowerCase();
  let rows=tasks.filter(t=>(want==='all'||t.outcome===want)&&(!q||t.task_id.toLowerCase().includes(q)||t.bench.toLowerCase().includes(q)));
  rows.sort((a,b)=>{const x=a[sortKey],y=b[sortKey];const c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y));return asc?c:-c;});
  body.innerHTML=rows.map(t=>'<tr class="task'+(t.details?' has-details':'')+'" data-index="'+esc(t.index)+'" data-outcome="'+esc(t.outcome)+'">'
    +'<td>'+esc(t.bench)+'</td><td>'+esc(t.task_id)+'</td><td class="'+esc(t.outcome)+'">'+esc(t.outcome)+'</td>'
    +'<td class="num">'+esc(Number(t.duration).toFixed(2))+'</td><td>'+esc(t.metrics)+'</td><td>'+esc(t.reason)+'</td></tr>').join('');
  shown.textContent='showing '+rows.length+' of '+tasks.length+' tasks';
  document.querySelectorAll('#task-table th').forEach(th=>{th.classList.toggle('sorted',th.dataset.key===sortKey);th.classList.toggle('asc',asc);});
}
body.addEventListener('click',e=>{
  const tr=e.target.closest('tr.task.has-details'); if(!tr) return;
  const next=tr.nextElementSibling;
  if(next&&next.classList.contains('details')){next.remove();return;}
  const t=tasks[+tr.dataset.index]; const d=document.createElement('tr'); d.className='details';
  d.innerHTML='<td colspan="6">'+esc(t.details)+'</td>'; tr.after(d);
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
})();
